// Command orders shows the user guide's use case "Preventing duplicate
// order processing": several workers, in several processes, may pick the
// same order; each processes it under the lock "order_processing/<id>" and
// first checks whether it is already processed, so every order is processed
// exactly once.
//
// Every worker tries every order, each in its own random order, so the
// workers collide all the time. Processing writes a row to
// kannuki_example_order_log and marks the order processed; the test checks
// one log row per order.
//
//	go run ./orders -backend pg -orders 100 &
//	go run ./orders -backend pg -orders 100
//
// Run it in two terminals with the same -run to see both share the work.
package main

import (
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"os/signal"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kannuki-go/kannuki/examples/internal/exampleenv"
)

// Tables of this example; rows are tagged with the run id.
const (
	ordersTable = "kannuki_example_orders"
	logTable    = "kannuki_example_order_log"
)

var schema = []string{
	`CREATE TABLE IF NOT EXISTS ` + ordersTable + ` (
	run VARCHAR(64) NOT NULL,
	id BIGINT NOT NULL,
	processed INT NOT NULL,
	PRIMARY KEY (run, id))`,
	// One row per processing: more than one for an order is the bug the lock prevents.
	`CREATE TABLE IF NOT EXISTS ` + logTable + ` (
	run VARCHAR(64) NOT NULL,
	order_id BIGINT NOT NULL,
	pid BIGINT NOT NULL,
	worker INT NOT NULL)`,
}

func main() {
	cfg := exampleenv.Flags(flag.CommandLine)
	orders := flag.Int("orders", 50, "number of orders")
	work := flag.Duration("work", 2*time.Millisecond, "time processing one order takes")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	env, err := cfg.Open(ctx)
	if err != nil {
		exampleenv.Fatal("orders", err)
	}
	defer env.Close()
	p := &processor{env: env, work: *work}
	if err := p.setup(ctx, *orders); err != nil {
		exampleenv.Fatal("orders", err)
	}
	if err := env.WaitStart(ctx); err != nil {
		exampleenv.Fatal("orders", err)
	}

	var wg sync.WaitGroup
	errs := make(chan error, env.Workers)
	for w := range env.Workers {
		wg.Go(func() {
			// Every worker sees every order, in its own order.
			for _, i := range rand.Perm(*orders) {
				if err := p.process(ctx, w, int64(i+1)); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		exampleenv.Fatal("orders", err)
	}
	env.Summary("orders", "orders", *orders, "processed", p.processed.Load(), "already_processed", p.skipped.Load())
}

type processor struct {
	env       *exampleenv.Env
	work      time.Duration
	processed atomic.Int64 // orders this process processed
	skipped   atomic.Int64 // orders found already processed
}

// process is the guide's OrderProcessor#process.
func (p *processor) process(ctx context.Context, worker int, id int64) error {
	return p.env.Locker.WithLock(ctx, fmt.Sprintf("order_processing/%d", id), func(ctx context.Context) error {
		db := p.env.Data
		done, err := db.Int(ctx, "SELECT processed FROM "+ordersTable+" WHERE run = ? AND id = ?", p.env.Run, id)
		if err != nil {
			return err
		}
		if done == 1 {
			p.skipped.Add(1)
			return nil
		}

		time.Sleep(p.work) // the processing itself: charge the card, ship...
		if _, err := db.Exec(ctx, "INSERT INTO "+logTable+" (run, order_id, pid, worker) VALUES (?, ?, ?, ?)",
			p.env.Run, id, p.env.Pid, worker); err != nil {
			return err
		}
		if _, err := db.Exec(ctx, "UPDATE "+ordersTable+" SET processed = 1 WHERE run = ? AND id = ?", p.env.Run, id); err != nil {
			return err
		}
		p.processed.Add(1)
		return nil
	})
}

// setup creates the tables and, once per run, the orders.
func (p *processor) setup(ctx context.Context, n int) error {
	if err := p.env.Schema(ctx, schema...); err != nil {
		return err
	}
	return p.env.Exclusive(ctx, "setup", func(ctx context.Context, db exampleenv.SQL) error {
		count, err := db.Int(ctx, "SELECT COUNT(*) FROM "+ordersTable+" WHERE run = ?", p.env.Run)
		if err != nil || count > 0 {
			return err // the first process of the run created them
		}
		for id := 1; id <= n; id++ {
			if _, err := db.Exec(ctx, "INSERT INTO "+ordersTable+" (run, id, processed) VALUES (?, ?, 0)", p.env.Run, id); err != nil {
				return err
			}
		}
		return nil
	})
}
