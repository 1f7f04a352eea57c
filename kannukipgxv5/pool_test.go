package kannukipgxv5

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/kannuki-go/kannuki"
)

// TestPoolOfOne: with a single connection pinned by a held lock, nothing
// hangs: a try fails at once, a timed wait fails after its budget, a wait
// forever ends with its context, and a waiter proceeds once the holder
// releases.
func TestPoolOfOne(t *testing.T) {
	pool := newPool(t, 1)
	b := New(pool, Options{})
	k1, k2 := newKey(t, "1"), newKey(t, "2")
	holder := mustAcquire(t, b, k1, excl(0))

	ctx, cancel := guardCtx()
	defer cancel()
	_, err := b.Acquire(ctx, k2, excl(0))
	if !errors.Is(err, ErrPoolExhausted) || !errors.Is(err, kannuki.ErrNotAcquired) {
		t.Fatalf("try with the pool exhausted: %v; want ErrPoolExhausted and ErrNotAcquired", err)
	}
	ok, err := kannuki.New(b, kannuki.Options{}).TryLock(ctx, k2.String, func(context.Context) error { return nil })
	if ok || !errors.Is(err, ErrPoolExhausted) {
		t.Fatalf("TryLock with the pool exhausted = %v, %v; want false and ErrPoolExhausted", ok, err)
	}
	const d = 200 * time.Millisecond
	start := time.Now()
	_, err = b.Acquire(ctx, k2, excl(d))
	if !errors.Is(err, ErrPoolExhausted) {
		t.Fatalf("timed wait with the pool exhausted: %v", err)
	}
	if el := time.Since(start); el < d {
		t.Fatalf("timed wait gave up after %s < %s", el, d)
	}
	dctx, dcancel := context.WithTimeout(ctx, d)
	_, err = b.Acquire(dctx, k2, excl(kannuki.WaitForever))
	dcancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("wait forever with the pool exhausted: %v", err)
	}
	// Held needs a connection too.
	dctx, dcancel = context.WithTimeout(ctx, d)
	_, err = b.Held(dctx, k1)
	dcancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Held with the pool exhausted: %v", err)
	}

	got := make(chan kannuki.Lease, 1)
	go func() {
		l, err := b.Acquire(ctx, k2, excl(kannuki.WaitForever))
		if err != nil {
			t.Errorf("waiter for a connection: %v", err)
		}
		got <- l
	}()
	mustRelease(t, holder)
	if l := <-got; l != nil {
		mustRelease(t, l)
	}
	if n := pool.Stat().TotalConns(); n > 1 {
		t.Fatalf("pool has %d connections", n)
	}
	poolHoldsNone(t, pool)
}

// TestPoolOfTwo: a holder and a waiter pin both connections; a try for
// another key fails at once; the handoff frees a connection.
func TestPoolOfTwo(t *testing.T) {
	pool := newPool(t, 2)
	b := New(pool, Options{})
	obs := newObserver(t)
	k1, k2 := newKey(t, "1"), newKey(t, "2")
	holder := mustAcquire(t, b, k1, excl(0))
	ctx, cancel := guardCtx()
	defer cancel()
	got := make(chan kannuki.Lease, 1)
	go func() {
		l, err := b.Acquire(ctx, k1, excl(kannuki.WaitForever))
		if err != nil {
			t.Errorf("waiter: %v", err)
		}
		got <- l
	}()
	obs.waitWaiters(k1, 1)
	_, err := b.Acquire(ctx, k2, excl(0))
	if !errors.Is(err, ErrPoolExhausted) {
		t.Fatalf("try with both connections pinned: %v", err)
	}
	mustRelease(t, holder)
	w := <-got
	if w == nil {
		return
	}
	l2 := mustAcquire(t, b, k2, excl(0)) // the holder's connection is back
	mustRelease(t, l2)
	mustRelease(t, w)
	poolHoldsNone(t, pool)
}

// TestPoolOfOneLocker: the self-deadlock a pool of one invites (a nested
// lock on another key while the only connection is pinned) ends with the
// call's timeout instead of hanging.
func TestPoolOfOneLocker(t *testing.T) {
	pool := newPool(t, 1)
	l := kannuki.New(New(pool, Options{}), kannuki.Options{})
	ctx, cancel := guardCtx()
	defer cancel()
	k1, k2 := newKey(t, "outer").String, newKey(t, "inner").String
	err := l.WithLock(ctx, k1, func(ctx context.Context) error {
		ok, err := l.TryLock(ctx, k2, func(context.Context) error { return nil })
		if ok || !errors.Is(err, kannuki.ErrPoolExhausted) {
			t.Errorf("nested TryLock on a pool of one = %v, %v; want false and ErrPoolExhausted", ok, err)
		}
		return l.WithLock(ctx, k2, func(context.Context) error { return nil }, kannuki.Timeout(100*time.Millisecond))
	})
	if !errors.Is(err, kannuki.ErrNotAcquired) || !errors.Is(err, kannuki.ErrPoolExhausted) {
		t.Fatalf("nested WithLock on a pool of one: %v", err)
	}
	poolHoldsNone(t, pool)
}
