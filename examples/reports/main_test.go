package main

import (
	"context"
	"fmt"
	"testing"

	"go.uber.org/goleak"

	"github.com/kannuki-go/kannuki/examples/internal/exampletest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const procs, workers, attempts = 2, 4, 10

// TestOneGenerationPerReport runs 2 processes of 4 workers requesting 4
// reports (2 users x 2 types) and checks that no report was ever generated
// twice at once (a gauge across processes), that every request was either
// generated or refused as in progress, and that some were refused. Without
// locks (-backend none) generations must overlap.
func TestOneGenerationPerReport(t *testing.T) {
	bin := exampletest.Build(t)
	args := []string{"-workers", fmt.Sprint(workers), "-attempts", fmt.Sprint(attempts), "-users", "2", "-types", "sales,usage"}
	for _, tg := range exampletest.All() {
		t.Run(tg.Name, func(t *testing.T) {
			e := exampletest.Open(t, tg, reportsTable, gaugeTable)
			ps := e.Start(bin, procs, args...)
			if err := check(t, e, ps); err != nil {
				e.Fatalf("%v", err)
			}
			if exampletest.Sum(t, ps, "in_progress") == 0 {
				e.Fatalf("no request was refused: the generations never met")
			}
		})
	}
	t.Run("none", func(t *testing.T) {
		e := exampletest.Open(t, exampletest.None(), reportsTable, gaugeTable)
		err := check(t, e, e.Start(bin, procs, args...))
		if err == nil {
			t.Fatal("without locks the check found nothing wrong: it could not catch a broken lock")
		}
		t.Logf("without locks, as expected: %v", err)
	})
}

// TestRefusedWhileInProgress holds the lock of user 1's sales report in
// the test process and checks that the program, in another process,
// refuses to generate it ("already in progress"), then generates it once
// the lock is released.
func TestRefusedWhileInProgress(t *testing.T) {
	bin := exampletest.Build(t)
	args := []string{"-workers", "1", "-attempts", "1", "-users", "1", "-types", "sales"}
	for _, tg := range exampletest.All() {
		t.Run(tg.Name, func(t *testing.T) {
			ctx := context.Background()
			e := exampletest.Open(t, tg, reportsTable, gaugeTable)
			h, err := e.Locker(t).Acquire(ctx, "reports/1/sales")
			if err != nil {
				t.Fatal(err)
			}
			ps := e.Start(bin, 1, args...)
			if g, p := ps[0].Int(t, "generated"), ps[0].Int(t, "in_progress"); g != 0 || p != 1 {
				e.Fatalf("while the report is in progress elsewhere: generated=%d in_progress=%d, want 0 and 1", g, p)
			}
			if err := h.Release(ctx); err != nil {
				t.Fatal(err)
			}
			ps = e.Start(bin, 1, args...)
			if g, p := ps[0].Int(t, "generated"), ps[0].Int(t, "in_progress"); g != 1 || p != 0 {
				e.Fatalf("after the release: generated=%d in_progress=%d, want 1 and 0", g, p)
			}
		})
	}
}

// check verifies the summaries against the tables and the gauge.
func check(t *testing.T, e *exampletest.Env, ps []exampletest.Proc) error {
	t.Helper()
	ctx := context.Background()
	for _, p := range ps {
		if g, r := p.Int(t, "generated"), p.Int(t, "in_progress"); g+r != workers*attempts {
			return fmt.Errorf("process %d: generated %d + in progress %d != %d requests", p.Pid, g, r, workers*attempts)
		}
	}
	overlap, err := e.Data.Int(ctx, "SELECT COALESCE(MAX(max_running), 0) FROM "+gaugeTable+" WHERE run = ?", e.Run)
	if err != nil {
		t.Fatal(err)
	}
	if overlap != 1 {
		return fmt.Errorf("up to %d generations of one report ran at once, want 1", overlap)
	}
	n, err := e.Data.Int(ctx, "SELECT COUNT(*) FROM "+reportsTable+" WHERE run = ?", e.Run)
	if err != nil {
		t.Fatal(err)
	}
	if g := exampletest.Sum(t, ps, "generated"); n != g {
		return fmt.Errorf("%d reports stored, processes report %d generated", n, g)
	}
	return nil
}
