package main

import (
	"context"
	"fmt"
	"testing"

	"go.uber.org/goleak"

	"github.com/kannuki-go/kannuki/examples/internal/exampletest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestInvoiceNumbers runs the example in 2 processes and checks that each
// company's numbers are exactly 1..N: no gap, no duplicate.
//
// The acceptance case is pg and pgbouncer: 8 workers in each of 2
// processes, 200 invoices per worker, one company, transaction-scoped locks
// (kannuki.InTx): the numbers must be exactly 1..3200, on PostgreSQL and
// through PgBouncer in transaction pooling mode. MariaDB runs the
// transaction form too (GET_LOCK held on the transaction's connection), the
// file backend the session form with the data in PostgreSQL, and -backend
// none must produce duplicates.
func TestInvoiceNumbers(t *testing.T) {
	bin := exampletest.Build(t)
	cases := []struct {
		target                       exampletest.Target
		lock                         string
		workers, invoices, companies int
	}{
		{exampletest.PG(), "tx", 8, 200, 1},
		{exampletest.PgBouncer(), "tx", 8, 200, 1},
		{exampletest.MySQL(), "tx", 4, 50, 2},
		{exampletest.File(), "session", 4, 50, 2},
	}
	for _, c := range cases {
		t.Run(c.target.Name, func(t *testing.T) {
			e := exampletest.Open(t, c.target, invoicesTable)
			ps := e.Start(bin, 2, "-lock", c.lock, "-workers", fmt.Sprint(c.workers),
				"-invoices", fmt.Sprint(c.invoices), "-companies", fmt.Sprint(c.companies))
			want := int64(2 * c.workers * c.invoices)
			if n := exampletest.Sum(t, ps, "created"); n != want {
				e.Fatalf("processes report %d invoices, want %d", n, want)
			}
			if err := check(t, e, want); err != nil {
				e.Fatalf("%v", err)
			}
		})
	}
	t.Run("none", func(t *testing.T) {
		e := exampletest.Open(t, exampletest.None(), invoicesTable)
		e.Start(bin, 2, "-lock", "session", "-workers", "4", "-invoices", "30")
		err := check(t, e, 2*4*30)
		if err == nil {
			t.Fatal("without locks the check found nothing wrong: it could not catch a broken lock")
		}
		t.Logf("without locks, as expected: %v", err)
	})
}

// check verifies that there are want invoices and that each company's
// numbers, in order, are 1, 2, 3...
func check(t *testing.T, e *exampletest.Env, want int64) error {
	t.Helper()
	rows, err := e.Data.Query(context.Background(),
		"SELECT company_id, number FROM "+invoicesTable+" WHERE run = ? ORDER BY company_id, number", e.Run)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var total int64
	next := map[int64]int64{} // company -> the number expected next
	for rows.Next() {
		var company, number int64
		if err := rows.Scan(&company, &number); err != nil {
			t.Fatal(err)
		}
		total++
		if next[company] == 0 {
			next[company] = 1
		}
		switch {
		case number == next[company]-1:
			return fmt.Errorf("company %d: number %d given twice", company, number)
		case number != next[company]:
			return fmt.Errorf("company %d: number %d follows %d (gap)", company, number, next[company]-1)
		}
		next[company]++
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if total != want {
		return fmt.Errorf("%d invoices, want %d", total, want)
	}
	for company, n := range next {
		t.Logf("company %d: numbers 1..%d", company, n-1)
	}
	return nil
}
