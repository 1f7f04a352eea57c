package kannukipgxv5

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/kannuki-go/kannuki/store"
)

// TestUnlockTimeout: on a connection of its own, an unlock or a relock the
// server does not answer gives up after Options.ReleaseTimeout (the
// watchdog fails the socket), reports a failed release rather than a lost
// lock, and destroys the connection: its session ends and frees the key.
func TestUnlockTimeout(t *testing.T) {
	pool, proxy := proxiedPool(t, 2)
	const timeout = 300 * time.Millisecond
	b := New(pool, Options{SharedConns: -1, ReleaseTimeout: timeout})
	obs := newObserver(t)
	ctx, cancel := guardCtx()
	defer cancel()
	for _, relock := range []bool{false, true} {
		k := newKey(t, fmt.Sprint("relock=", relock))
		l := mustAcquire(t, b, k, excl(0))
		pid := l.PID()
		proxy.stalled.Store(true)
		start := time.Now()
		var next store.Lease
		var err error
		if relock {
			next, err = l.(store.Relocker).Relock(ctx)
		} else {
			err = l.Release(ctx)
		}
		took := time.Since(start)
		proxy.stalled.Store(false)
		if next != nil || err == nil || errors.Is(err, store.ErrLockLost) {
			t.Fatalf("relock=%v without an answer = %v, %v; want no lease and a failed release", relock, next, err)
		}
		if took > hangGuard {
			t.Fatalf("relock=%v: gave up only after %s", relock, took)
		}
		t.Logf("relock=%v without an answer, after %s: %v", relock, took.Round(time.Millisecond), err)
		obs.sessionGone(pid)
		if rows := obs.rows(k); len(rows) != 0 {
			t.Fatalf("pg_locks rows left for %q: %v", k.String, rows)
		}
	}
	poolHoldsNone(t, pool)
}
