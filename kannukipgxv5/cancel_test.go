package kannukipgxv5

import (
	"context"
	"errors"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kannuki-go/kannuki/store"
)

// TestCancelWhileWaiting: a waiter whose context ends returns its error,
// is no longer queued on the server, and keeps its connection: the cancel
// request ends the statement, so the session goes back to the pool instead
// of being torn down.
func TestCancelWhileWaiting(t *testing.T) {
	pool := newPool(t, 4)
	b := New(pool, Options{})
	obs := newObserver(t)
	k := newKey(t, "k")
	holder := mustAcquire(t, b, k, excl(0))
	defer mustRelease(t, holder)

	for _, tc := range []struct {
		name string
		wait time.Duration
		ctx  func() (context.Context, context.CancelFunc)
		want error
	}{
		{"cancel", store.WaitForever, func() (context.Context, context.CancelFunc) {
			return context.WithCancel(context.Background())
		}, context.Canceled},
		{"cancel timed wait", 20 * time.Second, func() (context.Context, context.CancelFunc) {
			return context.WithCancel(context.Background())
		}, context.Canceled},
		{"deadline", store.WaitForever, func() (context.Context, context.CancelFunc) {
			return context.WithTimeout(context.Background(), 200*time.Millisecond)
		}, context.DeadlineExceeded},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := tc.ctx()
			defer cancel()
			done := make(chan error, 1)
			go func() {
				_, err := b.Acquire(ctx, k, excl(tc.wait))
				done <- err
			}()
			pid := obs.waitWaiters(k, 1)[0]
			if tc.want == context.Canceled {
				cancel()
			}
			var err error
			select {
			case err = <-done:
			case <-time.After(hangGuard):
				t.Fatal("Acquire did not return after its context ended")
			}
			if !errors.Is(err, tc.want) {
				t.Fatalf("Acquire = %v, want %v", err, tc.want)
			}
			if w := obs.waiters(k); len(w) != 0 {
				t.Fatalf("still waiting on the server: %v", w)
			}
			var alive bool
			if err := obs.c.QueryRow(context.Background(), "SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE pid = $1)", int32(pid)).Scan(&alive); err != nil {
				t.Fatal(err)
			}
			if !alive {
				t.Errorf("the waiter's session %d was closed; a cancel request should have kept it", pid)
			}
		})
	}
	poolHoldsNone(t, pool)
}

// TestNoLeakedLocks: 1,000 acquisitions canceled at random moments (before,
// during and after the wait) and 1,000 timed-out waits leave no lock held
// on the server and none on a pooled connection; exclusion holds
// throughout.
func TestNoLeakedLocks(t *testing.T) {
	const cancels, timeouts, workers = 1000, 1000, 8
	pool := newPool(t, workers+4)
	b := New(pool, Options{})
	obs := newObserver(t)
	ctx, cancel := guardCtx()
	defer cancel()
	k := newKey(t, "canceled")
	newConns := pool.Stat().NewConnsCount()

	// A churner takes and gives back the key all along, so that the
	// cancellations fall on tries, waits, grants and handovers.
	var inside atomic.Int32
	hold := func(l store.Lease) {
		if inside.Add(1) != 1 {
			t.Error("two holders at once")
		}
		time.Sleep(time.Duration(rand.IntN(300)) * time.Microsecond)
		inside.Add(-1)
		if err := l.Release(ctx); err != nil {
			t.Errorf("Release: %v", err)
		}
	}
	stop := make(chan struct{})
	var churn sync.WaitGroup
	churn.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			l, err := b.Acquire(ctx, k, excl(store.WaitForever))
			if err != nil {
				t.Errorf("churner: %v", err)
				return
			}
			hold(l)
			time.Sleep(time.Duration(rand.IntN(1000)) * time.Microsecond)
		}
	})

	var outcomes [3]atomic.Int32 // granted, canceled, other
	var next atomic.Int32
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for next.Add(1) <= cancels {
				// Short delays land on the pool, the try, the grant or
				// the time after it; long ones on the wait.
				delay := time.Duration(rand.IntN(1000)) * time.Microsecond
				if rand.IntN(2) == 0 {
					delay = time.Duration(1000+rand.IntN(9000)) * time.Microsecond
				}
				var actx context.Context
				var acancel context.CancelFunc
				switch n := rand.IntN(10); {
				case n == 0: // canceled before it starts
					actx, acancel = context.WithCancel(ctx)
					acancel()
				case n < 5: // an explicit cancellation (a cancel request)
					actx, acancel = context.WithCancel(ctx)
					time.AfterFunc(delay, acancel)
				default: // a deadline (the server's lock_timeout)
					actx, acancel = context.WithTimeout(ctx, delay)
				}
				wait := store.WaitForever
				if rand.IntN(2) == 0 {
					wait = time.Duration(1+rand.IntN(5)) * time.Millisecond
				}
				l, err := b.Acquire(actx, k, excl(wait))
				switch {
				case err == nil:
					outcomes[0].Add(1)
					hold(l)
				case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
					outcomes[1].Add(1)
				case errors.Is(err, store.ErrNotAcquired):
					outcomes[2].Add(1)
				default:
					t.Errorf("Acquire: %v", err)
				}
				acancel()
			}
		})
	}
	wg.Wait()
	close(stop)
	churn.Wait()
	t.Logf("canceled acquisitions: %d granted, %d canceled, %d timed out", outcomes[0].Load(), outcomes[1].Load(), outcomes[2].Load())

	// Timed-out waits on a key held all along.
	k2 := newKey(t, "timedout")
	holder := mustAcquire(t, b, k2, excl(0))
	next.Store(0)
	for range workers {
		wg.Go(func() {
			for next.Add(1) <= timeouts {
				_, err := b.Acquire(ctx, k2, excl(time.Duration(1+rand.IntN(3))*time.Millisecond))
				if !errors.Is(err, store.ErrNotAcquired) {
					t.Errorf("timed wait on a held key: %v", err)
				}
			}
		})
	}
	wg.Wait()
	if w := obs.waiters(k2); len(w) != 0 {
		t.Errorf("sessions still waiting for the held key: %v", w)
	}
	if h := obs.holders(k2); !slices.Equal(h, []uint32{holder.PID()}) {
		t.Errorf("holders of the held key %v, want only %d", h, holder.PID())
	}
	mustRelease(t, holder)

	for _, key := range []store.Key{k, k2} {
		if rows := obs.rows(key); len(rows) != 0 {
			t.Errorf("pg_locks rows left for %q: %v", key.String, rows)
		}
	}
	poolHoldsNone(t, pool)
	t.Logf("connections opened during the test: %d", pool.Stat().NewConnsCount()-newConns)
}

// TestCancelAtHandover: a waiter whose context is canceled at a random
// moment 0-0.6 ms after the holder starts releasing either succeeds and
// really holds the lock, or fails and holds nothing, as a third session
// sees it through pg_locks right after Acquire returns.
func TestCancelAtHandover(t *testing.T) {
	const trials = 300
	pool := newPool(t, 4)
	b := New(pool, Options{})
	obs := newObserver(t)
	ctx, cancel := guardCtx()
	defer cancel()
	var won, lost int
	for trial := range trials {
		k := newKey(t, "k")
		holder := mustAcquire(t, b, k, excl(0))
		wctx, wcancel := context.WithCancel(ctx)
		type result struct {
			l   store.Lease
			err error
		}
		res := make(chan result, 1)
		go func() {
			l, err := b.Acquire(wctx, k, excl(store.WaitForever))
			res <- result{l, err}
		}()
		obs.waitWaiters(k, 1)
		delay := time.Duration(rand.IntN(600_001)) * time.Nanosecond
		released := make(chan error, 1)
		start := time.Now()
		go func() { released <- holder.Release(ctx) }()
		for time.Since(start) < delay {
			// spin: a timer is too coarse for sub-millisecond delays
		}
		wcancel()
		r := <-res
		if err := <-released; err != nil {
			t.Fatalf("trial %d: holder's Release: %v", trial, err)
		}
		holders := obs.holders(k)
		switch {
		case r.err == nil:
			won++
			if pid := pidOf(r.l); !slices.Equal(holders, []uint32{pid}) {
				t.Fatalf("trial %d (cancel after %s): Acquire succeeded but holders are %v, not the waiter %d", trial, delay, holders, pid)
			}
			mustRelease(t, r.l)
		case errors.Is(r.err, context.Canceled):
			lost++
			if len(holders) != 0 {
				t.Fatalf("trial %d (cancel after %s): Acquire failed (%v) but the key is held by %v", trial, delay, r.err, holders)
			}
		default:
			t.Fatalf("trial %d: Acquire: %v", trial, r.err)
		}
		if w := obs.waiters(k); len(w) != 0 {
			t.Fatalf("trial %d: still waiting: %v", trial, w)
		}
	}
	t.Logf("%d trials: %d got the lock, %d were canceled", trials, won, lost)
	poolHoldsNone(t, pool)
}
