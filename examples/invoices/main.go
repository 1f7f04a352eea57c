// Command invoices shows the user guide's use case "Sequential number
// generation": invoice numbers per company are the last number plus one,
// so two invoices created at once must not read the same last number.
//
// The lock is the Go form of the guide's model macro
// `kannuki :number_generation, scope: :company_id`: a keys.Definition
// whose key is "number_generation/<company id>". By default (-lock tx) it
// is taken inside the transaction that reads the last number and inserts
// the invoice, with kannuki.InTx: the lock ends with the transaction, just
// after the commit made the new number visible, and it works behind
// PgBouncer in transaction pooling mode. -lock session takes a session lock
// around autocommitted statements instead (the default with -backend file,
// which has no transactions; not safe behind a transaction pooler).
//
//	go run ./invoices -backend pg -workers 8 -invoices 200 &
//	go run ./invoices -backend pg -workers 8 -invoices 200
//
// Behind PgBouncer (transaction mode), use the simple protocol:
//
//	go run ./invoices -dsn 'postgres://postgres@127.0.0.1:6432/test?sslmode=disable&default_query_exec_mode=simple_protocol'
package main

import (
	"context"
	"database/sql"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"sync"
	"sync/atomic"

	"github.com/kannuki-go/kannuki/keys"

	"github.com/kannuki-go/kannuki"
	"github.com/kannuki-go/kannuki/examples/internal/exampleenv"
)

const invoicesTable = "kannuki_example_invoices"

var schema = []string{
	// No unique constraint on the number on purpose: a duplicate must show
	// in the data (the test looks for it), not be turned into an error.
	`CREATE TABLE IF NOT EXISTS ` + invoicesTable + ` (
	run VARCHAR(64) NOT NULL,
	company_id BIGINT NOT NULL,
	number BIGINT NOT NULL,
	pid BIGINT NOT NULL)`,
	`CREATE INDEX IF NOT EXISTS kannuki_example_invoices_number ON ` + invoicesTable + ` (run, company_id, number)`,
}

// numberGeneration is `kannuki :number_generation, scope: :company_id`.
var numberGeneration = keys.Define[int64]("number_generation")

func main() {
	cfg := exampleenv.Flags(flag.CommandLine)
	companies := flag.Int("companies", 1, "number of companies; worker w's i-th invoice goes to company (w+i)%companies+1")
	invoices := flag.Int("invoices", 50, "invoices each worker creates")
	lock := flag.String("lock", "", "tx: lock inside the transaction (kannuki.InTx); session: a session lock around autocommitted statements (default tx; session with -backend file or none)")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	env, err := cfg.Open(ctx)
	if err != nil {
		exampleenv.Fatal("invoices", err)
	}
	defer env.Close()
	if *lock == "" {
		*lock = "tx"
		if env.Backend == exampleenv.File || env.Backend == exampleenv.None {
			*lock = "session" // no transactions to lock in
		}
	}
	if *lock != "tx" && *lock != "session" {
		exampleenv.Fatal("invoices", fmt.Errorf("-lock %q: want tx or session", *lock))
	}
	s := &service{env: env, inTx: *lock == "tx"}
	if err := env.Schema(ctx, schema...); err != nil {
		exampleenv.Fatal("invoices", err)
	}
	if err := env.WaitStart(ctx); err != nil {
		exampleenv.Fatal("invoices", err)
	}

	var wg sync.WaitGroup
	errs := make(chan error, env.Workers)
	for w := range env.Workers {
		wg.Go(func() {
			for i := range *invoices {
				company := int64((w+i)%*companies + 1)
				if _, err := s.createInvoice(ctx, company); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		exampleenv.Fatal("invoices", err)
	}
	env.Summary("invoices", "lock", *lock, "companies", *companies, "created", s.created.Load())
}

type service struct {
	env     *exampleenv.Env
	inTx    bool
	created atomic.Int64
}

// createInvoice is the guide's InvoiceService#create_invoice: it returns
// the new invoice's number.
func (s *service) createInvoice(ctx context.Context, company int64) (number int64, err error) {
	if s.inTx {
		// The transaction-scoped form: BEGIN, lock, read, insert, COMMIT;
		// the lock ends with the transaction.
		err = kannuki.InTx(ctx, s.env.Locker, numberGeneration.Key(company), func(ctx context.Context, tx *sql.Tx) error {
			number, err = s.insertNext(ctx, s.env.On(tx), company)
			return err
		})
	} else {
		// The session form: each statement commits on its own, inside the lock.
		err = s.env.Locker.WithLock(ctx, numberGeneration.Key(company), func(ctx context.Context) error {
			number, err = s.insertNext(ctx, s.env.Data, company)
			return err
		})
	}
	if err != nil {
		return 0, fmt.Errorf("invoice for company %d: %w", company, err)
	}
	s.created.Add(1)
	return number, nil
}

// insertNext reads the company's last number and inserts the next one.
// Only the lock keeps two callers from reading the same last number.
func (s *service) insertNext(ctx context.Context, db exampleenv.SQL, company int64) (int64, error) {
	last, err := db.Int(ctx, "SELECT MAX(number) FROM "+invoicesTable+" WHERE run = ? AND company_id = ?", s.env.Run, company)
	if err != nil {
		return 0, err
	}
	_, err = db.Exec(ctx, "INSERT INTO "+invoicesTable+" (run, company_id, number, pid) VALUES (?, ?, ?, ?)",
		s.env.Run, company, last+1, s.env.Pid)
	return last + 1, err
}
