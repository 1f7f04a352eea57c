package kannukipgxv5

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/kannuki-go/kannuki/store"

	"github.com/kannuki-go/kannuki"
)

// TestLockLoss: pg_terminate_backend on the holder's session makes Check
// fail and Release report ErrLockLost; the connection is not reused.
func TestLockLoss(t *testing.T) {
	pool := newPool(t, 2)
	b := New(pool, Options{})
	obs := newObserver(t)
	k := newKey(t, "k")
	l := mustAcquire(t, b, k, excl(0))
	ctx, cancel := guardCtx()
	defer cancel()
	if err := l.Check(ctx); err != nil {
		t.Fatalf("Check while held: %v", err)
	}
	// The keepalive names the key in pg_stat_activity, so Locks does too.
	infos, err := b.Locks(ctx)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, li := range infos {
		if li.PID == int64(l.PID()) && li.Granted && li.ID == k.ID && li.Mode == store.ModeExclusive {
			found = li.Name == k.String
		}
	}
	if !found {
		t.Fatalf("Locks does not show the held key %q: %+v", k.String, infos)
	}
	pid := l.PID()
	terminateHolders(t, k)
	obs.waitFor("the session to end", func() bool {
		var alive bool
		err := obs.c.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE pid = $1)", int32(pid)).Scan(&alive)
		return err == nil && !alive
	})
	if err := l.Check(ctx); err == nil {
		t.Fatal("Check succeeded on a terminated session")
	}
	if err := l.Release(ctx); !errors.Is(err, store.ErrLockLost) {
		t.Fatalf("Release after the loss = %v, want ErrLockLost", err)
	}
	if rows := obs.rows(k); len(rows) != 0 {
		t.Fatalf("pg_locks: %v", rows)
	}
	poolHoldsNone(t, pool)
}

// TestLockLossLocker: through a Locker, fn's context is canceled with cause
// ErrLockLost within the keepalive interval, and WithLock returns an error
// matching ErrLockLost.
func TestLockLossLocker(t *testing.T) {
	pool := newPool(t, 2)
	l := kannuki.New(New(pool, Options{}), kannuki.Options{KeepaliveInterval: 100 * time.Millisecond})
	k := newKey(t, "k")
	ctx, cancel := guardCtx()
	defer cancel()
	err := l.WithLock(ctx, k.String, func(fctx context.Context) error {
		terminateHolders(t, k)
		select {
		case <-fctx.Done():
		case <-time.After(hangGuard):
			t.Fatal("fn's context was not canceled after the session was terminated")
		}
		if cause := context.Cause(fctx); !errors.Is(cause, store.ErrLockLost) {
			t.Errorf("cause = %v, want ErrLockLost", cause)
		}
		return nil
	})
	if !errors.Is(err, store.ErrLockLost) {
		t.Fatalf("WithLock = %v, want ErrLockLost", err)
	}
	poolHoldsNone(t, pool)
}

// TestUnlockFalse: when the unlock finds the lock not held (here released
// behind the lease's back), Release reports ErrLockLost and the connection
// is destroyed, not pooled.
func TestUnlockFalse(t *testing.T) {
	pool := newPool(t, 2)
	b := New(pool, dedicatedOpts) // the test reaches into the pinned connection
	obs := newObserver(t)
	k := newKey(t, "k")
	l := mustAcquire(t, b, k, excl(0)).(*lease)
	pid := l.PID()
	ctx, cancel := guardCtx()
	defer cancel()
	if _, err := l.pc.Exec(ctx, "SELECT pg_advisory_unlock_all()"); err != nil {
		t.Fatal(err)
	}
	if err := l.Release(ctx); !errors.Is(err, store.ErrLockLost) {
		t.Fatalf("Release = %v, want ErrLockLost", err)
	}
	obs.waitFor("the session to end", func() bool {
		var alive bool
		err := obs.c.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE pid = $1)", int32(pid)).Scan(&alive)
		return err == nil && !alive
	})
}
