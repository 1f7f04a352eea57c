package pgsql

import (
	"context"
	"errors"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kannuki-go/kannuki/store"

	"github.com/kannuki-go/kannuki"
)

// trials is the number of randomized trials per kind and driver (less
// with -short).
func trials(n int) int {
	if testing.Short() {
		return n / 5
	}
	return n
}

// TestNoLeakedLocks: after acquisitions canceled at random moments (before,
// during and after the wait, racing grants) and timed-out waits, no lock
// remains held on the server and every pooled connection holds none. A
// holder goroutine toggles the lock meanwhile, and an overlap counter
// checks that no two holders ever coexist.
func TestNoLeakedLocks(t *testing.T) {
	forEachDriver(t, func(t *testing.T, d driver) {
		b, db := newBackend(t, d, 10)
		hb, _ := newBackend(t, d, 2)
		warm(t, db, 10)
		obs := newObserver(t)
		k := uniqueKey(t)
		const workers = 4
		var active atomic.Int32
		enter := func(who string) {
			if n := active.Add(1); n != 1 {
				t.Errorf("%s: %d holders at once", who, n)
			}
		}
		leave := func() { active.Add(-1) }

		// Phase 1: random cancellations while the lock changes hands.
		n := trials(1000)
		stop := make(chan struct{})
		var hwg sync.WaitGroup
		hwg.Add(1)
		go func() {
			defer hwg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				l, err := hb.Acquire(context.Background(), k, store.Request{Wait: 5 * time.Second})
				if err != nil {
					t.Errorf("toggling holder: %v", err)
					return
				}
				enter("holder")
				time.Sleep(time.Duration(rand.IntN(2000)) * time.Microsecond)
				leave()
				if err := l.Release(context.Background()); err != nil {
					t.Errorf("toggling holder release: %v", err)
					return
				}
				time.Sleep(time.Duration(rand.IntN(2000)) * time.Microsecond)
			}
		}()
		var granted, canceled, timedOut atomic.Int32
		var wg sync.WaitGroup
		var next atomic.Int32
		for range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for next.Add(1) <= int32(n) {
					delay := time.Duration(rand.IntN(3000)) * time.Microsecond
					var ctx context.Context
					var cancel context.CancelFunc
					switch rand.IntN(10) {
					case 0: // canceled before the call
						ctx, cancel = context.WithCancel(context.Background())
						cancel()
					case 1, 2, 3, 4: // a deadline (the server's lock_timeout)
						ctx, cancel = context.WithTimeout(context.Background(), delay)
					default: // canceled mid-flight
						ctx, cancel = context.WithCancel(context.Background())
						time.AfterFunc(delay, cancel)
					}
					l, err := b.Acquire(ctx, k, store.Request{Wait: store.WaitForever})
					cancel()
					switch {
					case err == nil:
						granted.Add(1)
						enter("worker")
						leave()
						if err := l.Release(context.Background()); err != nil {
							t.Errorf("release after a grant: %v", err)
						}
					case errors.Is(err, context.Canceled):
						canceled.Add(1)
					case errors.Is(err, context.DeadlineExceeded):
						timedOut.Add(1)
					default:
						t.Errorf("unexpected error: %v", err)
					}
				}
			}()
		}
		wg.Wait()
		close(stop)
		hwg.Wait()
		t.Logf("canceled acquisitions: %d granted, %d canceled, %d deadline", granted.Load(), canceled.Load(), timedOut.Load())

		// Phase 2: timed-out waits on a lock held throughout.
		holder := mustAcquire(t, hb, k, store.Request{})
		next.Store(0)
		var notAcquired atomic.Int32
		for range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for next.Add(1) <= int32(n) {
					wait := time.Duration(1+rand.IntN(4)) * time.Millisecond
					_, err := b.Acquire(context.Background(), k, store.Request{Wait: wait})
					if !errors.Is(err, kannuki.ErrNotAcquired) {
						t.Errorf("timed-out wait: %v, want ErrNotAcquired", err)
					}
					notAcquired.Add(1)
				}
			}()
		}
		wg.Wait()
		t.Logf("timed-out waits: %d", notAcquired.Load())
		if h := obs.held(t, k); h != 1 {
			t.Fatalf("%d holders while only the holder should hold", h)
		}
		mustRelease(t, holder)

		if h, w := obs.held(t, k), obs.waiting(t, k); h != 0 || w != 0 {
			t.Fatalf("after all trials: %d holders, %d waiters; want none", h, w)
		}
		assertPoolClean(t, db)
	})
}

// TestCancelAtHandover: a waiter canceled at a random moment 0-0.6 ms after
// the holder starts releasing either succeeds and really holds the lock,
// or fails and holds nothing, as a third session sees it.
func TestCancelAtHandover(t *testing.T) {
	forEachDriver(t, func(t *testing.T, d driver) {
		hb, _ := newBackend(t, d, 2)
		wb, db := newBackend(t, d, 4)
		obs := newObserver(t)
		k := uniqueKey(t)
		type result struct {
			l   store.Lease
			err error
		}
		var won, lost int
		n := trials(300)
		for i := range n {
			h := mustAcquire(t, hb, k, store.Request{})
			ctx, cancel := context.WithCancel(context.Background())
			res := make(chan result, 1)
			go func() {
				l, err := wb.Acquire(ctx, k, store.Request{Wait: store.WaitForever})
				res <- result{l, err}
			}()
			eventually(t, 10*time.Second, "the waiter to queue", func() bool { return obs.waiting(t, k) == 1 })
			delay := time.Duration(rand.IntN(600)) * time.Microsecond
			timer := time.AfterFunc(delay, cancel)
			mustRelease(t, h)
			var r result
			select {
			case r = <-res:
			case <-time.After(10 * time.Second):
				t.Fatalf("trial %d: waiter did not return within 10s", i)
			}
			timer.Stop()
			cancel()
			held := obs.held(t, k)
			switch {
			case r.err == nil:
				won++
				if held != 1 {
					t.Fatalf("trial %d: success reported but %d sessions hold the lock", i, held)
				}
				mustRelease(t, r.l)
			case errors.Is(r.err, context.Canceled):
				lost++
				if held != 0 {
					t.Fatalf("trial %d: error %v but %d sessions hold the lock", i, r.err, held)
				}
			default:
				t.Fatalf("trial %d: unexpected error %v", i, r.err)
			}
		}
		t.Logf("%d trials: %d granted and held, %d canceled and holding nothing", n, won, lost)
		if h := obs.held(t, k); h != 0 {
			t.Fatalf("%d holders at the end", h)
		}
		assertPoolClean(t, db)
	})
}
