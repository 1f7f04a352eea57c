package kannukipgxv5_test

import (
	"context"
	"log"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/kannuki-go/kannuki"
	"github.com/kannuki-go/kannuki/kannukipgxv5"
)

// kannuki.InTx opens a transaction, locks the key for its lifetime and
// commits when fn returns nil. This also works behind PgBouncer in
// transaction mode (with a query exec mode that does not cache prepared
// statements).
func ExampleBackend_RunTx() {
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, "postgres://postgres@127.0.0.1:6432/test?sslmode=disable&default_query_exec_mode=simple_protocol")
	if err != nil {
		log.Fatal(err)
	}
	defer pool.Close()
	locker := kannuki.New(kannukipgxv5.New(pool, kannukipgxv5.Options{}), kannuki.Options{KeyPrefix: "myapp"})

	err = kannuki.InTx(ctx, locker, "invoice_numbers/42", func(ctx context.Context, tx pgx.Tx) error {
		var last int64
		if err := tx.QueryRow(ctx, "SELECT COALESCE(max(number), 0) FROM invoices WHERE company_id = $1", 42).Scan(&last); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, "INSERT INTO invoices (company_id, number) VALUES ($1, $2)", 42, last+1)
		return err
	}, kannuki.Timeout(5*time.Second))
	if err != nil {
		log.Fatal(err)
	}
}

// kannuki.TxOptions sets the options of the transaction InTx opens, here
// a read-only snapshot for a report that must not overlap the month's
// closing run.
func ExampleBackend_RunTx_txOptions() {
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, "postgres://app@db.internal/app")
	if err != nil {
		log.Fatal(err)
	}
	defer pool.Close()
	locker := kannuki.New(kannukipgxv5.New(pool, kannukipgxv5.Options{}), kannuki.Options{KeyPrefix: "myapp"})

	opts := pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}
	err = kannuki.InTx(ctx, locker, "month_close/2026-11", func(ctx context.Context, tx pgx.Tx) error {
		var total int64
		return tx.QueryRow(ctx, "SELECT COALESCE(sum(amount), 0) FROM invoices WHERE month = $1", "2026-11").Scan(&total)
	}, kannuki.TxOptions(opts), kannuki.Timeout(5*time.Second))
	if err != nil {
		log.Fatal(err)
	}
}

// kannuki.LockTx locks inside a transaction the caller runs; a timeout
// leaves the transaction usable.
func ExampleBackend_AcquireTx() {
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, "postgres://postgres@127.0.0.1:5432/test?sslmode=disable")
	if err != nil {
		log.Fatal(err)
	}
	defer pool.Close()
	locker := kannuki.New(kannukipgxv5.New(pool, kannukipgxv5.Options{}), kannuki.Options{KeyPrefix: "myapp"})

	tx, err := pool.Begin(ctx)
	if err != nil {
		log.Fatal(err)
	}
	defer tx.Rollback(ctx)
	if err := kannuki.LockTx(ctx, locker, tx, "inventory/sku-1", kannuki.Timeout(time.Second)); err != nil {
		log.Fatal(err) // the transaction is still usable here
	}
	// ... update the stock; the lock is released by the commit ...
	if err := tx.Commit(ctx); err != nil {
		log.Fatal(err)
	}
}
