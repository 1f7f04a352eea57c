package kannukipgxv5

import (
	"testing"
	"time"
)

// TestWatchdogSparesPromptStatements: with a bound far shorter than the
// whole run, hundreds of prompt tries and unlocks on one shared
// connection, while other leases stay held on it, never trip the
// watchdog: each statement is judged by its own deadline, and a late
// call of the watchdog for a statement that already ended does nothing.
// A tripped watchdog would destroy the connection and lose the held leases.
func TestWatchdogSparesPromptStatements(t *testing.T) {
	pool := newPool(t, 2)
	const bound = 250 * time.Millisecond
	b := New(pool, Options{SharedConns: 1, ReleaseTimeout: bound})
	obs := newObserver(t)
	ctx, cancel := guardCtx()
	defer cancel()

	held := mustAcquire(t, b, newKey(t, "held"), excl(0))
	pid := held.PID()
	k := newKey(t, "cycled")
	deadline := time.Now().Add(6 * bound)
	cycles := 0
	for cycles < 300 || time.Now().Before(deadline) {
		l := mustAcquire(t, b, k, excl(0))
		if got := l.PID(); got != pid {
			t.Fatalf("cycle %d ran on session %d, want the shared session %d", cycles, got, pid)
		}
		if err := l.Release(ctx); err != nil {
			t.Fatalf("cycle %d: Release: %v", cycles, err)
		}
		cycles++
	}
	if err := held.Check(ctx); err != nil {
		t.Fatalf("held lease after %d cycles: Check = %v", cycles, err)
	}
	if err := held.Release(ctx); err != nil {
		t.Fatalf("held lease: Release = %v", err)
	}
	if rows := obs.rows(k); len(rows) != 0 {
		t.Errorf("pg_locks rows left: %v", rows)
	}
	poolHoldsNone(t, pool)
}
