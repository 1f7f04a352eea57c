package main

import (
	"context"
	"fmt"
	"testing"

	"go.uber.org/goleak"

	"github.com/kannuki-go/kannuki/examples/internal/exampletest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const procs, workers, jobs, dups = 2, 4, 8, 6

// TestDuplicateJobs runs 2 processes of 4 workers over queues holding 8
// distinct jobs 6 times each, and checks that two jobs with the same
// arguments never ran at once (across processes), that every skipped
// duplicate was reported (outcome and event), and that every distinct job
// ran. Without locks (-backend none) duplicates must overlap.
func TestDuplicateJobs(t *testing.T) {
	bin := exampletest.Build(t)
	args := []string{"-workers", fmt.Sprint(workers), "-jobs", fmt.Sprint(jobs), "-dups", fmt.Sprint(dups)}
	for _, tg := range exampletest.All() {
		t.Run(tg.Name, func(t *testing.T) {
			e := exampletest.Open(t, tg, runsTable, gaugeTable)
			ps := e.Start(bin, procs, args...)
			if err := check(t, e, ps); err != nil {
				e.Fatalf("%v", err)
			}
			if exampletest.Sum(t, ps, "skipped") == 0 {
				e.Fatalf("no duplicate was skipped: the duplicates never met")
			}
		})
	}
	t.Run("none", func(t *testing.T) {
		e := exampletest.Open(t, exampletest.None(), runsTable, gaugeTable)
		ps := e.Start(bin, procs, args...)
		err := check(t, e, ps)
		if err == nil {
			t.Fatal("without locks the check found nothing wrong: it could not catch a broken lock")
		}
		t.Logf("without locks, as expected: %v", err)
	})
}

// check verifies the guard's promises from the summaries and the tables.
func check(t *testing.T, e *exampletest.Env, ps []exampletest.Proc) error {
	t.Helper()
	ctx := context.Background()
	for _, p := range ps {
		ran, skipped := p.Int(t, "ran"), p.Int(t, "skipped")
		if ran+skipped != jobs*dups {
			return fmt.Errorf("process %d: ran %d + skipped %d != %d enqueued", p.Pid, ran, skipped, jobs*dups)
		}
		if events := p.Int(t, "skip_events"); events != skipped {
			return fmt.Errorf("process %d: %d skips but %d skip events", p.Pid, skipped, events)
		}
	}
	overlap, err := e.Data.Int(ctx, "SELECT COALESCE(MAX(max_running), 0) FROM "+gaugeTable+" WHERE run = ?", e.Run)
	if err != nil {
		t.Fatal(err)
	}
	if overlap != 1 {
		return fmt.Errorf("up to %d jobs with the same arguments ran at once, want 1", overlap)
	}
	runs, err := e.Data.Int(ctx, "SELECT COUNT(*) FROM "+runsTable+" WHERE run = ?", e.Run)
	if err != nil {
		t.Fatal(err)
	}
	if ran := exampletest.Sum(t, ps, "ran"); runs != ran {
		return fmt.Errorf("%d runs recorded, processes report %d", runs, ran)
	}
	distinct, err := e.Data.Int(ctx, "SELECT COUNT(DISTINCT job_key) FROM "+runsTable+" WHERE run = ?", e.Run)
	if err != nil {
		t.Fatal(err)
	}
	if distinct != jobs {
		return fmt.Errorf("%d distinct jobs ran, want all %d", distinct, jobs)
	}
	return nil
}
