package kannukipgxv5

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/kannuki-go/kannuki/store"

	"github.com/kannuki-go/kannuki"
	"go.uber.org/goleak"
)

// TestWatch: pg_terminate_backend on the session holding a lock (a
// connection of its own, or a shared one) cancels fn's context with
// ErrLockLost by the socket watch alone: the keepalive is an hour away.
// With NoWatch the holder is not told until its release, which reports
// the loss.
func TestWatch(t *testing.T) {
	for _, mode := range modes {
		t.Run(mode.name, func(t *testing.T) {
			latency := killWhileHeld(t, mode.opts, 0)
			t.Logf("told %s after pg_terminate_backend was sent", latency.Round(time.Microsecond))
			opts := mode.opts
			opts.NoWatch = true
			// Not told within many times what the watch needed (never
			// less than half a second): nothing but the release can tell.
			killWhileHeld(t, opts, max(100*latency, 500*time.Millisecond))
		})
	}
}

// killWhileHeld holds a key in WithLock on a Backend with opts, ends the
// holder's session from another one, and returns how long fn's context
// took to be canceled. With opts.NoWatch it checks instead that fn's
// context stays alive for quiet after the session ended, then lets fn
// return: WithLock reports the loss.
func killWhileHeld(t *testing.T, opts Options, quiet time.Duration) time.Duration {
	t.Helper()
	pool := newPool(t, 4)
	l := kannuki.New(New(pool, opts), kannuki.Options{KeyPrefix: "kannukipgxv5-test-" + randHex(), KeepaliveInterval: time.Hour})
	obs := newObserver(t)
	// Only the loss ends fn's context: no deadline (the waits below have
	// their own guard).
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	k, err := l.Key("k")
	if err != nil {
		t.Fatal(err)
	}
	fctxs := make(chan context.Context, 1)
	finish := make(chan struct{})
	var result error
	var wg sync.WaitGroup
	wg.Go(func() {
		result = l.WithLock(ctx, "k", func(fctx context.Context) error {
			fctxs <- fctx
			select {
			case <-fctx.Done():
			case <-finish:
			}
			return nil
		})
	})
	fctx := <-fctxs
	pids := obs.holders(k)
	if len(pids) != 1 {
		t.Fatalf("holders %v, want one session", pids)
	}
	sent := time.Now()
	var killed bool
	if err := obs.c.QueryRow(ctx, "SELECT pg_terminate_backend($1)", int32(pids[0])).Scan(&killed); err != nil || !killed {
		t.Fatalf("pg_terminate_backend(%d) = %v, %v", pids[0], killed, err)
	}
	var latency time.Duration
	if !opts.NoWatch {
		obs.waitFor("fn's context to be canceled", func() bool { return fctx.Err() != nil })
		latency = time.Since(sent)
		if cause := context.Cause(fctx); !errors.Is(cause, store.ErrLockLost) {
			t.Fatalf("fn's context cause = %v, want ErrLockLost", cause)
		}
	} else {
		obs.sessionGone(pids[0])
		for end := time.Now().Add(quiet); time.Now().Before(end); time.Sleep(5 * time.Millisecond) {
			if fctx.Err() != nil {
				t.Fatalf("told with NoWatch and the keepalive an hour away: %v", context.Cause(fctx))
			}
		}
	}
	close(finish)
	wg.Wait()
	if !errors.Is(result, store.ErrLockLost) {
		t.Fatalf("WithLock = %v, want ErrLockLost", result)
	}
	poolHoldsNone(t, pool)
	return latency
}

// TestWatchNoGoroutinePerLock: 10,000 locks held on this backend
// (multiplexed) cost no goroutine and no watch per lock: the goroutines
// are as many as with 100 locks held, the poller watches one socket per
// shared connection, and nothing is left once they are released.
func TestWatchNoGoroutinePerLock(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	const few, many, workers = 100, 10_000, 8
	pool := newPool(t, 16)
	defer pool.Close()
	be := New(pool, Options{})
	l := kannuki.New(be, kannuki.Options{KeyPrefix: "kannukipgxv5-test-" + randHex(), KeepaliveInterval: time.Hour})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute) // a hang guard only
	defer cancel()
	handles := make([]*kannuki.Handle, many)
	defer func() {
		for _, h := range handles {
			if h != nil {
				_ = h.Release(context.Background())
			}
		}
	}()
	acquire := func(from, to int) {
		var wg sync.WaitGroup
		for w := range workers {
			wg.Go(func() {
				for i := from + w; i < to; i += workers {
					h, err := l.Acquire(ctx, fmt.Sprint("k", i))
					if err != nil {
						t.Errorf("Acquire k%d: %v", i, err)
						return
					}
					handles[i] = h
				}
			})
		}
		wg.Wait()
		if t.Failed() {
			t.FailNow()
		}
	}
	acquire(0, few)
	gFew, armedFew := runtime.NumGoroutine(), be.poller.Len()
	acquire(few, many)
	gMany, armedMany := runtime.NumGoroutine(), be.poller.Len()
	conns := be.mux.size()
	t.Logf("%d locks: %d goroutines, %d sockets watched; %d locks: %d goroutines, %d sockets watched, %d shared connections",
		few, gFew, armedFew, many, gMany, armedMany, conns)
	// A little slack for goroutines of the runtime, pgxpool or a test
	// before this one that come and go; one per lock would be thousands.
	if gMany > gFew+5 {
		t.Errorf("%d goroutines with %d locks held, %d with %d", gMany, many, gFew, few)
	}
	if armedMany == 0 || armedMany > conns {
		t.Errorf("%d sockets watched for %d locks on %d shared connections, want one per connection", armedMany, many, conns)
	}
	for i, h := range handles {
		if err := h.Release(ctx); err != nil {
			t.Fatalf("Release k%d: %v", i, err)
		}
		handles[i] = nil
	}
	if n := be.poller.Len(); n != 0 {
		t.Fatalf("%d sockets still watched with no lock held", n)
	}
	poolHoldsNone(t, pool)
}
