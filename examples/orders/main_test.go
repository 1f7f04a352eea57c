package main

import (
	"context"
	"fmt"
	"testing"

	"go.uber.org/goleak"

	"github.com/kannuki-go/kannuki/examples/internal/exampletest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const procs, workers, orders = 2, 4, 60

// TestOrdersProcessedOnce runs 2 processes of 4 workers, every worker trying
// every order, and checks that every order was processed exactly once (one
// log row, marked processed) and that both processes took part. Without
// locks (-backend none) the same check must fail.
func TestOrdersProcessedOnce(t *testing.T) {
	bin := exampletest.Build(t)
	for _, tg := range exampletest.All() {
		t.Run(tg.Name, func(t *testing.T) {
			e := exampletest.Open(t, tg, ordersTable, logTable)
			ps := e.Start(bin, procs, "-workers", fmt.Sprint(workers), "-orders", fmt.Sprint(orders))
			if err := check(t, e, ps); err != nil {
				e.Fatalf("%v", err)
			}
			for _, p := range ps {
				if p.Int(t, "processed") == 0 {
					e.Fatalf("process %d processed nothing: the processes did not compete", p.Pid)
				}
			}
		})
	}
	t.Run("none", func(t *testing.T) {
		e := exampletest.Open(t, exampletest.None(), ordersTable, logTable)
		ps := e.Start(bin, procs, "-workers", fmt.Sprint(workers), "-orders", fmt.Sprint(orders), "-work", "5ms")
		err := check(t, e, ps)
		if err == nil {
			t.Fatal("without locks the check found nothing wrong: it could not catch a broken lock")
		}
		t.Logf("without locks, as expected: %v", err)
	})
}

// check verifies that every order was processed exactly once.
func check(t *testing.T, e *exampletest.Env, ps []exampletest.Proc) error {
	t.Helper()
	if n := exampletest.Sum(t, ps, "processed") + exampletest.Sum(t, ps, "already_processed"); n != procs*workers*orders {
		return fmt.Errorf("processes report %d attempts, want %d", n, procs*workers*orders)
	}
	rows, err := e.Data.Query(context.Background(), `SELECT o.id, o.processed, COUNT(l.order_id)
		FROM `+ordersTable+` o LEFT JOIN `+logTable+` l ON l.run = o.run AND l.order_id = o.id
		WHERE o.run = ? GROUP BY o.id, o.processed ORDER BY o.id`, e.Run)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	seen := 0
	for rows.Next() {
		var id, processed, times int64
		if err := rows.Scan(&id, &processed, &times); err != nil {
			t.Fatal(err)
		}
		seen++
		if processed != 1 || times != 1 {
			return fmt.Errorf("order %d: processed=%d, processed %d times; want exactly once", id, processed, times)
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if seen != orders {
		return fmt.Errorf("%d orders in the table, want %d", seen, orders)
	}
	if n := exampletest.Sum(t, ps, "processed"); n != orders {
		return fmt.Errorf("processes report %d orders processed, want %d", n, orders)
	}
	return nil
}
