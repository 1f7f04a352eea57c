package main

import (
	"context"
	"fmt"
	"testing"

	"go.uber.org/goleak"

	"github.com/kannuki-go/kannuki/examples/internal/exampletest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const procs, workers, products, stock, purchases = 2, 4, 3, 40, 20

// TestNeverOversold runs 2 processes of 4 workers buying 3 products whose
// total demand exceeds the stock, and checks, per product, that the orders
// replay as a chain from the initial stock (each starts from the stock the
// previous one left), that the stock never went negative, that units sold
// plus units left equal the initial stock, and that the orders match what
// the processes report. Without locks (-backend none) the replay must
// break.
func TestNeverOversold(t *testing.T) {
	bin := exampletest.Build(t)
	args := []string{"-workers", fmt.Sprint(workers), "-products", fmt.Sprint(products),
		"-stock", fmt.Sprint(stock), "-purchases", fmt.Sprint(purchases)}
	for _, tg := range exampletest.All() {
		t.Run(tg.Name, func(t *testing.T) {
			e := exampletest.Open(t, tg, productsTable, ordersTable)
			ps := e.Start(bin, procs, args...)
			if err := check(t, e, ps); err != nil {
				e.Fatalf("%v", err)
			}
			if exampletest.Sum(t, ps, "sold_out") == 0 {
				e.Fatalf("no purchase found the product sold out")
			}
			if n := exampletest.Sum(t, ps, "busy"); n != 0 {
				e.Fatalf("%d purchases gave up waiting 10 s for the lock", n)
			}
		})
	}
	t.Run("none", func(t *testing.T) {
		e := exampletest.Open(t, exampletest.None(), productsTable, ordersTable)
		err := check(t, e, e.Start(bin, procs, append(args, "-work", "5ms")...))
		if err == nil {
			t.Fatal("without locks the check found nothing wrong: it could not catch a broken lock")
		}
		t.Logf("without locks, as expected: %v", err)
	})
}

// check replays each product's orders and compares with the summaries.
func check(t *testing.T, e *exampletest.Env, ps []exampletest.Proc) error {
	t.Helper()
	ctx := context.Background()
	for _, p := range ps {
		if n := p.Int(t, "orders") + p.Int(t, "sold_out") + p.Int(t, "busy"); n != workers*purchases {
			return fmt.Errorf("process %d accounts for %d purchases, want %d", p.Pid, n, workers*purchases)
		}
	}
	var orders, units int64
	for product := int64(1); product <= products; product++ {
		rows, err := e.Data.Query(ctx, "SELECT quantity, stock_before, stock_after FROM "+ordersTable+
			" WHERE run = ? AND product_id = ? ORDER BY stock_before DESC, stock_after DESC", e.Run, product)
		if err != nil {
			t.Fatal(err)
		}
		left := int64(stock)
		for rows.Next() {
			var qty, before, after int64
			if err := rows.Scan(&qty, &before, &after); err != nil {
				t.Fatal(err)
			}
			orders++
			units += qty
			switch {
			case before != left:
				rows.Close()
				return fmt.Errorf("product %d: an order of %d started from stock %d, but %d were left", product, qty, before, left)
			case after != before-qty || after < 0:
				rows.Close()
				return fmt.Errorf("product %d: an order of %d took the stock from %d to %d", product, qty, before, after)
			}
			left = after
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		rows.Close()
		now, err := e.Data.Int(ctx, "SELECT stock FROM "+productsTable+" WHERE run = ? AND id = ?", e.Run, product)
		if err != nil {
			t.Fatal(err)
		}
		if now != left || now < 0 {
			return fmt.Errorf("product %d: stock is %d, the orders leave %d (sold %d of %d)", product, now, left, int64(stock)-left, stock)
		}
	}
	if n := exampletest.Sum(t, ps, "orders"); n != orders {
		return fmt.Errorf("%d orders stored, processes report %d", orders, n)
	}
	if n := exampletest.Sum(t, ps, "units"); n != units {
		return fmt.Errorf("%d units in the orders, processes report %d sold", units, n)
	}
	return nil
}
