package main

import (
	"context"
	"fmt"
	"testing"

	"go.uber.org/goleak"

	"github.com/kannuki-go/kannuki/examples/internal/exampletest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const procs, workers, ticks = 2, 4, 8

var tasks = []string{"expire_sessions", "send_digests", "refresh_stats"}

// TestOncePerTick runs 8 scheduler instances (2 processes of 4) on the
// same ticks and checks that each tick ran, and ran its tasks, exactly
// once, and that instances did skip ticks another one ran; then that a
// late instance runs none of them again. Without locks
// (-backend none) some tick must run twice.
func TestOncePerTick(t *testing.T) {
	bin := exampletest.Build(t)
	args := []string{"-workers", fmt.Sprint(workers), "-ticks", fmt.Sprint(ticks), "-interval", "250ms"}
	for _, tg := range exampletest.All() {
		t.Run(tg.Name, func(t *testing.T) {
			e := exampletest.Open(t, tg, ticksTable, taskRunsTable)
			ps := e.Start(bin, procs, args...)
			if err := check(t, e, ps); err != nil {
				e.Fatalf("%v", err)
			}
			if exampletest.Sum(t, ps, "skipped") == 0 {
				e.Fatalf("no instance skipped a tick: the instances never met")
			}

			// A late instance gets the lock on every tick, and must find
			// each one done already.
			late := e.Start(bin, 1, args...)
			if ran, done := late[0].Int(t, "ran"), late[0].Int(t, "already_done"); ran != 0 || done == 0 {
				e.Fatalf("late instance: ran %d ticks, found %d done; want 0 and some", ran, done)
			}
			if err := check(t, e, append(ps, late...)); err != nil {
				e.Fatalf("after the late instance: %v", err)
			}
		})
	}
	t.Run("none", func(t *testing.T) {
		e := exampletest.Open(t, exampletest.None(), ticksTable, taskRunsTable)
		err := check(t, e, e.Start(bin, procs, args...))
		if err == nil {
			t.Fatal("without locks the check found nothing wrong: it could not catch a broken lock")
		}
		t.Logf("without locks, as expected: %v", err)
	})
}

// check verifies that every tick's tasks ran exactly once.
func check(t *testing.T, e *exampletest.Env, ps []exampletest.Proc) error {
	t.Helper()
	ctx := context.Background()
	for _, p := range ps {
		if n := p.Int(t, "ran") + p.Int(t, "already_done") + p.Int(t, "skipped"); n != workers*ticks {
			return fmt.Errorf("process %d accounts for %d tick calls, want %d", p.Pid, n, workers*ticks)
		}
	}
	for tick := range int64(ticks) {
		n, err := e.Data.Int(ctx, "SELECT COUNT(*) FROM "+ticksTable+" WHERE run = ? AND tick = ?", e.Run, tick)
		if err != nil {
			t.Fatal(err)
		}
		if n != 1 {
			return fmt.Errorf("tick %d ran %d times, want exactly once", tick, n)
		}
		for _, task := range tasks {
			n, err := e.Data.Int(ctx, "SELECT COUNT(*) FROM "+taskRunsTable+" WHERE run = ? AND tick = ? AND task = ?", e.Run, tick, task)
			if err != nil {
				t.Fatal(err)
			}
			if n != 1 {
				return fmt.Errorf("tick %d: task %s ran %d times, want exactly once", tick, task, n)
			}
		}
	}
	if n := exampletest.Sum(t, ps, "ran"); n != ticks {
		return fmt.Errorf("processes report %d ticks run, want %d", n, ticks)
	}
	return nil
}
