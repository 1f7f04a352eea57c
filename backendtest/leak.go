package backendtest

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/kannuki-go/kannuki/store"

	"github.com/kannuki-go/kannuki"
)

// leakWorkers run the leak trials side by side, each on its own key.
const leakWorkers = 4

// Moments at which a trial cancels its waiter.
const (
	cancelBefore   = iota // the context is cancelled before Acquire is called
	cancelDuring          // while the holder still holds: the waiter must fail
	cancelHandover        // around the moment the holder releases: either outcome
	cancelAfter           // the key is free: the grant and the cancel race
	cancelMoments
)

var momentNames = [...]string{"before", "during", "handover", "after"}

// testNoLeakedLocks: Trials acquisitions cancelled at random moments and
// Trials timed-out waits leave no lock behind. Every waiter that reports
// success must really hold the lock (checked from a third session), and
// every waiter that reports an error must hold nothing, which shows when the
// holder next takes the key.
func (s *suite) testNoLeakedLocks(t *testing.T) {
	holder, waiter := s.h.New(t), s.h.New(t)
	var keys []store.Key
	newKeys := func(what string) []store.Key {
		ks := make([]store.Key, leakWorkers)
		for i := range ks {
			ks[i] = newKey(t, fmt.Sprint(what, i))
		}
		keys = append(keys, ks...)
		return ks
	}

	// Each key gets a parallel subtest of its own, so the trials overlap
	// (and so that failures are reported from the goroutine of a test).
	cancelKeys := newKeys("cancel")
	t.Run("Cancelled", func(t *testing.T) {
		for w, key := range cancelKeys {
			t.Run(fmt.Sprint(w), func(t *testing.T) {
				t.Parallel()
				rng := rand.New(rand.NewPCG(uint64(w), uint64(time.Now().UnixNano())))
				last := "none"
				for i := range share(s.h.Trials, leakWorkers, w) {
					what, err := s.cancelTrial(t, holder, waiter, key, rng)
					if err != nil {
						t.Fatalf("trial %d (the one before: %s): %v", i, last, err)
					}
					last = what
				}
			})
		}
	})

	timeoutKeys := newKeys("timeout")
	t.Run("TimedOut", func(t *testing.T) {
		for w, key := range timeoutKeys {
			t.Run(fmt.Sprint(w), func(t *testing.T) {
				t.Parallel()
				rng := rand.New(rand.NewPCG(uint64(w), uint64(time.Now().UnixNano())))
				if err := timeoutTrials(holder, waiter, key, share(s.h.Trials, leakWorkers, w), rng); err != nil {
					t.Fatal(err)
				}
			})
		}
	})

	// Nothing is held, and the keys still work for a client that was not
	// involved.
	fresh := s.h.New(t)
	for _, key := range keys {
		s.expectFreed(t, key, "after the leak trials")
		l := mustAcquire(t, fresh, key, excl(0))
		mustRelease(t, l)
		s.expectFree(t, key, "after a final cycle")
	}
}

// cancelTrial runs one cancelled acquisition and says what it did.
func (s *suite) cancelTrial(t testing.TB, holder, waiter store.Backend, key store.Key, rng *rand.Rand) (what string, err error) {
	gctx, gcancel := guardCtx()
	defer gcancel()
	// A waiter that failed but left the lock held shows here.
	hl, err := holder.Acquire(gctx, key, excl(freeGrace))
	if err != nil {
		return "", fmt.Errorf("holder cannot take the key within %s (left held by the trial before?): %w", freeGrace, err)
	}
	holding := true
	releaseHolder := func() error {
		if !holding {
			return nil
		}
		holding = false
		return hl.Release(context.Background())
	}
	defer func() { _ = releaseHolder() }()

	moment := rng.IntN(cancelMoments)
	wait := store.WaitForever
	if rng.IntN(2) == 0 {
		wait = 10 * time.Second
	}
	what = fmt.Sprintf("cancel %s, wait %s", momentNames[moment], waitString(wait))
	defer func() {
		if err != nil {
			err = fmt.Errorf("%s: %w", what, err)
		}
	}()
	delay := func() time.Duration { return time.Duration(rng.IntN(2000)) * time.Microsecond }

	ctx, cancel := context.WithCancel(gctx)
	defer cancel()
	var ch <-chan result
	switch moment {
	case cancelBefore:
		cancel()
		ch = acquireAsync(ctx, waiter, key, excl(wait))
	case cancelDuring:
		ch = acquireAsync(ctx, waiter, key, excl(wait))
		time.Sleep(delay())
		cancel()
	case cancelHandover:
		ch = acquireAsync(ctx, waiter, key, excl(wait))
		d1, d2 := delay(), delay()
		time.AfterFunc(d2, cancel)
		time.Sleep(d1)
		if err := releaseHolder(); err != nil {
			return what, fmt.Errorf("holder release: %w", err)
		}
	case cancelAfter:
		if err := releaseHolder(); err != nil {
			return what, fmt.Errorf("holder release: %w", err)
		}
		ch = acquireAsync(ctx, waiter, key, excl(wait))
		time.Sleep(delay())
		cancel()
	}
	var r result
	select {
	case r = <-ch:
	case <-time.After(hangGuard):
		return what, fmt.Errorf("waiter did not return within %s", hangGuard)
	}

	if r.err == nil {
		if holding {
			_ = r.lease.Release(context.Background())
			return what, errors.New("waiter acquired while the holder still held the key")
		}
		if !s.heldOnServer(t, key) {
			_ = r.lease.Release(context.Background())
			return what, errors.New("waiter reported success but the key is not held on the server")
		}
		if err := r.lease.Release(context.Background()); err != nil {
			return what, fmt.Errorf("release of a lease acquired under cancellation: %w", err)
		}
		return what + ": acquired", nil
	}
	if !errors.Is(r.err, context.Canceled) && !(wait > 0 && errors.Is(r.err, kannuki.ErrNotAcquired)) {
		return what, fmt.Errorf("error %v does not match context.Canceled", r.err)
	}
	return what + ": " + r.err.Error(), releaseHolder()
}

// timeoutTrials runs n waits that time out, by the request's budget or by
// the context's deadline, while holder holds key.
func timeoutTrials(holder, waiter store.Backend, key store.Key, n int, rng *rand.Rand) error {
	gctx, gcancel := guardCtx()
	defer gcancel()
	hl, err := holder.Acquire(gctx, key, excl(freeGrace))
	if err != nil {
		return fmt.Errorf("holder cannot take the key: %w", err)
	}
	for i := range n {
		d := time.Duration(1+rng.IntN(5000)) * time.Microsecond
		ctx, cancel := context.WithTimeout(gctx, hangGuard)
		wait := d
		if i%2 == 1 {
			// The context's deadline ends the wait instead.
			ctx, cancel = context.WithTimeout(gctx, d)
			wait = store.WaitForever
		}
		l, err := waiter.Acquire(ctx, key, excl(wait))
		cancel()
		if err == nil {
			_ = l.Release(context.Background())
			_ = hl.Release(context.Background())
			return fmt.Errorf("trial %d: a wait of %s acquired a held key", i, d)
		}
		if !errors.Is(err, kannuki.ErrNotAcquired) && !errors.Is(err, context.DeadlineExceeded) {
			_ = hl.Release(context.Background())
			return fmt.Errorf("trial %d: wait of %s: error %v matches neither ErrNotAcquired nor context.DeadlineExceeded", i, d, err)
		}
	}
	if err := hl.Release(context.Background()); err != nil {
		return fmt.Errorf("holder release: %w", err)
	}
	// The holder gets the key back: timed-out waiters hold nothing.
	hl, err = holder.Acquire(gctx, key, excl(freeGrace))
	if err != nil {
		return fmt.Errorf("holder cannot retake the key after the timed-out waits: %w", err)
	}
	return hl.Release(context.Background())
}
