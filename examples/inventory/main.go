// Command inventory shows the user guide's use case "Inventory
// management": a purchase checks the stock and decrements it under the
// lock "inventory/<product>" (Lock, waiting up to 10 s), so concurrent
// purchases never oversell: the stock never goes negative and the units
// sold plus the units left are the initial stock.
//
// The stock is read, checked and written back as separate statements on
// purpose: only the lock keeps two purchases from reading the same stock.
// Every order records the stock before and after it, which lets the test
// replay the purchases in order.
//
//	go run ./inventory -backend pg -products 3 -stock 40 &
//	go run ./inventory -backend pg -products 3 -stock 40
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"os/signal"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kannuki-go/kannuki"
	"github.com/kannuki-go/kannuki/examples/internal/exampleenv"
)

const (
	productsTable = "kannuki_example_products"
	ordersTable   = "kannuki_example_product_orders"
)

var schema = []string{
	`CREATE TABLE IF NOT EXISTS ` + productsTable + ` (
	run VARCHAR(64) NOT NULL,
	id BIGINT NOT NULL,
	stock BIGINT NOT NULL,
	PRIMARY KEY (run, id))`,
	`CREATE TABLE IF NOT EXISTS ` + ordersTable + ` (
	run VARCHAR(64) NOT NULL,
	product_id BIGINT NOT NULL,
	quantity BIGINT NOT NULL,
	stock_before BIGINT NOT NULL,
	stock_after BIGINT NOT NULL,
	user_id BIGINT NOT NULL)`,
}

// errInsufficientStock is the guide's InsufficientStockError.
var errInsufficientStock = errors.New("insufficient stock")

// errBusy is what the guide tells the user when the lock did not come in time.
var errBusy = errors.New("product is currently being purchased by another user, please try again")

func main() {
	cfg := exampleenv.Flags(flag.CommandLine)
	products := flag.Int("products", 3, "products 1..n")
	stock := flag.Int("stock", 40, "initial stock of each product")
	purchases := flag.Int("purchases", 20, "purchases each worker attempts")
	maxQty := flag.Int("max-quantity", 3, "a purchase is of 1..max-quantity units")
	work := flag.Duration("work", time.Millisecond, "time between the stock check and its update (payment...)")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	env, err := cfg.Open(ctx)
	if err != nil {
		exampleenv.Fatal("inventory", err)
	}
	defer env.Close()
	s := &purchaseService{env: env, work: *work}
	if err := s.setup(ctx, *products, *stock); err != nil {
		exampleenv.Fatal("inventory", err)
	}
	if err := env.WaitStart(ctx); err != nil {
		exampleenv.Fatal("inventory", err)
	}

	var orders, units, soldOut, busy atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, env.Workers)
	for w := range env.Workers {
		user := int64(env.Pid*100 + w)
		wg.Go(func() {
			for range *purchases {
				product, qty := int64(rand.IntN(*products)+1), int64(rand.IntN(*maxQty)+1)
				err := s.purchase(ctx, product, qty, user)
				switch {
				case err == nil:
					orders.Add(1)
					units.Add(qty)
				case errors.Is(err, errInsufficientStock):
					soldOut.Add(1)
				case errors.Is(err, errBusy):
					busy.Add(1)
				default:
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		exampleenv.Fatal("inventory", err)
	}
	env.Summary("inventory", "orders", orders.Load(), "units", units.Load(), "sold_out", soldOut.Load(), "busy", busy.Load())
}

type purchaseService struct {
	env  *exampleenv.Env
	work time.Duration
}

// purchase is the guide's PurchaseService#purchase.
func (s *purchaseService) purchase(ctx context.Context, product, qty, user int64) error {
	err := s.env.Locker.WithLock(ctx, fmt.Sprintf("inventory/%d", product), func(ctx context.Context) error {
		db := s.env.Data
		stock, err := db.Int(ctx, "SELECT stock FROM "+productsTable+" WHERE run = ? AND id = ?", s.env.Run, product)
		if err != nil {
			return err
		}
		if stock < qty {
			return errInsufficientStock
		}
		time.Sleep(s.work)
		if _, err := db.Exec(ctx, "UPDATE "+productsTable+" SET stock = ? WHERE run = ? AND id = ?", stock-qty, s.env.Run, product); err != nil {
			return err
		}
		_, err = db.Exec(ctx, "INSERT INTO "+ordersTable+" (run, product_id, quantity, stock_before, stock_after, user_id) VALUES (?, ?, ?, ?, ?, ?)",
			s.env.Run, product, qty, stock, stock-qty, user)
		return err
	}, kannuki.Timeout(10*time.Second))
	if errors.Is(err, kannuki.ErrNotAcquired) {
		return fmt.Errorf("%w (%v)", errBusy, err)
	}
	return err
}

// setup creates the tables and, once per run, the products.
func (s *purchaseService) setup(ctx context.Context, products, stock int) error {
	if err := s.env.Schema(ctx, schema...); err != nil {
		return err
	}
	return s.env.Exclusive(ctx, "setup", func(ctx context.Context, db exampleenv.SQL) error {
		n, err := db.Int(ctx, "SELECT COUNT(*) FROM "+productsTable+" WHERE run = ?", s.env.Run)
		if err != nil || n > 0 {
			return err
		}
		for id := 1; id <= products; id++ {
			if _, err := db.Exec(ctx, "INSERT INTO "+productsTable+" (run, id, stock) VALUES (?, ?, ?)", s.env.Run, id, stock); err != nil {
				return err
			}
		}
		return nil
	})
}
