package kannukipgxv5

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/kannuki-go/kannuki/store"

	"github.com/kannuki-go/kannuki"
)

// TestPoolOfOne: with multiplexing off and a single connection pinned by a
// held lock, nothing hangs: a try fails at once, a timed wait fails after
// its budget, a wait forever ends with its context, and a waiter proceeds
// once the holder releases.
func TestPoolOfOne(t *testing.T) {
	pool := newPool(t, 1)
	b := New(pool, dedicatedOpts)
	k1, k2 := newKey(t, "1"), newKey(t, "2")
	holder := mustAcquire(t, b, k1, excl(0))

	ctx, cancel := guardCtx()
	defer cancel()
	_, err := b.Acquire(ctx, k2, excl(0))
	if !errors.Is(err, ErrPoolExhausted) || !errors.Is(err, store.ErrNotAcquired) {
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
	_, err = b.Acquire(dctx, k2, excl(store.WaitForever))
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

	got := make(chan store.Lease, 1)
	go func() {
		l, err := b.Acquire(ctx, k2, excl(store.WaitForever))
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

// TestPoolOfTwo: with multiplexing off, a holder and a waiter pin both
// connections; a try for another key fails at once; the handoff frees a
// connection.
func TestPoolOfTwo(t *testing.T) {
	pool := newPool(t, 2)
	b := New(pool, dedicatedOpts)
	obs := newObserver(t)
	k1, k2 := newKey(t, "1"), newKey(t, "2")
	holder := mustAcquire(t, b, k1, excl(0))
	ctx, cancel := guardCtx()
	defer cancel()
	got := make(chan store.Lease, 1)
	go func() {
		l, err := b.Acquire(ctx, k1, excl(store.WaitForever))
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

// TestPoolOfOneLocker: with multiplexing off, the self-deadlock a pool of
// one invites (a nested lock on another key while the only connection is
// pinned) ends with the call's timeout instead of hanging.
func TestPoolOfOneLocker(t *testing.T) {
	pool := newPool(t, 1)
	l := kannuki.New(New(pool, dedicatedOpts), kannuki.Options{})
	ctx, cancel := guardCtx()
	defer cancel()
	k1, k2 := newKey(t, "outer").String, newKey(t, "inner").String
	err := l.WithLock(ctx, k1, func(ctx context.Context) error {
		ok, err := l.TryLock(ctx, k2, func(context.Context) error { return nil })
		if ok || !errors.Is(err, store.ErrPoolExhausted) {
			t.Errorf("nested TryLock on a pool of one = %v, %v; want false and ErrPoolExhausted", ok, err)
		}
		return l.WithLock(ctx, k2, func(context.Context) error { return nil }, kannuki.Timeout(100*time.Millisecond))
	})
	if !errors.Is(err, store.ErrNotAcquired) || !errors.Is(err, store.ErrPoolExhausted) {
		t.Fatalf("nested WithLock on a pool of one: %v", err)
	}
	poolHoldsNone(t, pool)
}

// TestPoolOfOneMux: with multiplexing, the only connection of the pool
// holds many locks; a wait, which needs a connection of its own, fails
// after its budget with ErrPoolExhausted (or its context's error) while
// the connection holds locks, and gets it once they are released.
func TestPoolOfOneMux(t *testing.T) {
	pool := newPool(t, 1)
	b := New(pool, Options{})
	obs := newObserver(t)
	k1, k2, k3 := newKey(t, "1"), newKey(t, "2"), newKey(t, "3")
	holder := mustAcquire(t, b, k1, excl(0))
	l2 := mustAcquire(t, b, k2, excl(store.WaitForever))
	if holder.PID() != l2.PID() {
		t.Fatalf("two locks of a pool of one on sessions %d and %d", holder.PID(), l2.PID())
	}
	// A try refused by another client's lock leaves the shared connection usable.
	other := mustAcquire(t, New(newPool(t, 1), Options{}), k3, excl(0))
	ctx, cancel := guardCtx()
	defer cancel()
	_, err := b.Acquire(ctx, k3, excl(0))
	notAcquired(t, err)
	if errors.Is(err, ErrPoolExhausted) {
		t.Fatalf("a refused try on the shared connection reported %v", err)
	}
	mustRelease(t, other)
	ok, err := kannuki.New(b, kannuki.Options{}).TryLock(ctx, k3.String, func(context.Context) error { return nil })
	if !ok || err != nil {
		t.Fatalf("TryLock on the shared connection = %v, %v", ok, err)
	}

	// k1 is held here: a try is refused from the books, a wait needs a
	// second connection.
	_, err = b.Acquire(ctx, k1, excl(0))
	notAcquired(t, err)
	const d = 200 * time.Millisecond
	start := time.Now()
	_, err = b.Acquire(ctx, k1, excl(d))
	if !errors.Is(err, ErrPoolExhausted) {
		t.Fatalf("timed wait with the pool exhausted: %v", err)
	}
	if el := time.Since(start); el < d {
		t.Fatalf("timed wait gave up after %s < %s", el, d)
	}
	dctx, dcancel := context.WithTimeout(ctx, d)
	_, err = b.Acquire(dctx, k1, excl(store.WaitForever))
	dcancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("wait forever with the pool exhausted: %v", err)
	}

	got := make(chan store.Lease, 1)
	go func() {
		l, err := b.Acquire(ctx, k1, excl(store.WaitForever))
		if err != nil {
			t.Errorf("waiter for a connection: %v", err)
		}
		got <- l
	}()
	mustRelease(t, holder)
	mustRelease(t, l2) // the last lock: the connection goes back to the pool
	l := <-got
	if l == nil {
		return
	}
	if h := obs.holders(k1); len(h) != 1 || h[0] != pidOf(l) {
		t.Fatalf("holders of k1 %v, want the waiter %d", h, pidOf(l))
	}
	mustRelease(t, l)
	if n := pool.Stat().TotalConns(); n > 1 {
		t.Fatalf("pool has %d connections", n)
	}
	if n := b.mux.size(); n != 0 {
		t.Fatalf("%d shared connections left with no lock held", n)
	}
	poolHoldsNone(t, pool)
}

// TestPoolOfOneLockerMux: with multiplexing, nested locks on other keys
// share the pool's only connection.
func TestPoolOfOneLockerMux(t *testing.T) {
	pool := newPool(t, 1)
	l := kannuki.New(New(pool, Options{}), kannuki.Options{})
	ctx, cancel := guardCtx()
	defer cancel()
	k1, k2, k3 := newKey(t, "outer").String, newKey(t, "inner").String, newKey(t, "innermost").String
	ran := 0
	err := l.WithLock(ctx, k1, func(ctx context.Context) error {
		ok, err := l.TryLock(ctx, k2, func(ctx context.Context) error {
			return l.WithLock(ctx, k3, func(context.Context) error { ran++; return nil }, kannuki.Timeout(time.Second))
		})
		if !ok || err != nil {
			t.Errorf("nested TryLock on a pool of one = %v, %v", ok, err)
		}
		return err
	})
	if err != nil || ran != 1 {
		t.Fatalf("nested locks on a pool of one: %v (innermost ran %d times)", err, ran)
	}
	poolHoldsNone(t, pool)
}

// TestTryConnBounded: a try's pool request, which opens a shared
// connection or takes a connection of its own, finds an idle pool
// connection that hangs (pgxpool pings a connection idle for over a
// second before handing it out, and the server stopped answering). The
// watchdog ends that pool request after TryConnTimeout, and the try
// reports an exhausted pool instead of hanging.
func TestTryConnBounded(t *testing.T) {
	for _, shared := range []int{0, -1} {
		t.Run(fmt.Sprint("SharedConns=", shared), func(t *testing.T) {
			pool, proxy := proxiedPool(t, 1)
			const timeout = 300 * time.Millisecond
			b := New(pool, Options{SharedConns: shared, TryConnTimeout: timeout})
			ctx, cancel := guardCtx()
			defer cancel()
			if err := pool.Ping(ctx); err != nil {
				t.Fatal(err)
			}
			time.Sleep(1100 * time.Millisecond) // idle long enough to be pinged on reuse
			proxy.stalled.Store(true)
			defer proxy.stalled.Store(false) // the abandoned ping then ends, and the pool can close

			done := make(chan error, 1)
			go func() {
				l, err := b.Acquire(ctx, newKey(t, "try"), excl(0))
				if l != nil {
					_ = l.Release(ctx)
				}
				done <- err
			}()
			select {
			case err := <-done:
				if !errors.Is(err, ErrPoolExhausted) || !errors.Is(err, store.ErrNotAcquired) {
					t.Fatalf("try on a pool whose idle connection hangs: %v; want ErrPoolExhausted", err)
				}
			case <-time.After(30 * time.Second):
				t.Fatal("a try on a pool whose idle connection hangs still running after 30s")
			}
		})
	}
}
