package backendtest

import (
	"context"
	"errors"
	"math/rand/v2"
	"testing"

	"github.com/kannuki-go/kannuki/store"

	"github.com/kannuki-go/kannuki"
)

// testRelock: for leases that are kannuki.Relockers, Relock gives the lock
// back and takes it again when nobody else waits for it; a session waiting
// in the store gets it first; a lost lock is reported and not taken again.
// The exclusion cases relock too (releaseOrRelock), under contention from
// other clients and processes.
func (s *suite) testRelock(t *testing.T) {
	probe := s.h.New(t)
	key := newKey(t, "probe")
	l := mustAcquire(t, probe, key, excl(0))
	_, relocks := l.(store.Relocker)
	mustRelease(t, l)
	if !relocks {
		t.Skip("the backend's leases are not store.Relocker")
	}

	t.Run("Free", func(t *testing.T) {
		modes := []store.Request{excl(0)}
		if s.h.Shared {
			modes = append(modes, shared(0))
		}
		for _, req := range modes {
			key := newKey(t, req.Mode.String())
			a, b := s.h.New(t), s.h.New(t)
			next := mustRelock(t, mustAcquire(t, a, key, req))
			if next == nil {
				t.Fatalf("%s: Relock with nobody waiting did not take the lock again", req.Mode)
			}
			done := releaseLater(t, next)
			s.expectHeld(t, key, "after Relock")
			l, err := b.Acquire(context.Background(), key, excl(0))
			expectNotAcquired(t, "exclusive try by another client after Relock", l, err)
			if req.Mode == store.ModeShared {
				mustRelease(t, mustAcquire(t, b, key, shared(0)))
			}
			// The new lease relocks in turn, and releases.
			next2 := mustRelock(t, next)
			done()
			if next2 == nil {
				t.Fatalf("%s: second Relock did not take the lock again", req.Mode)
			}
			mustRelease(t, next2)
			s.expectFree(t, key, "after releasing the relocked lease")
		}
	})

	t.Run("YieldsToWaiter", func(t *testing.T) {
		key := newKey(t, "")
		a, b := s.h.New(t), s.h.New(t)
		la := mustAcquire(t, a, key, excl(0))
		done := releaseLater(t, la)
		ctx, cancel := guardCtx()
		defer cancel()
		ch := acquireAsync(ctx, b, key, excl(store.WaitForever))
		expectPending(t, ch, "waiter while the lock is held")
		next := mustRelock(t, la)
		done()
		if next != nil {
			_ = next.Release(context.Background())
			t.Fatal("Relock took the lock again although another session waited for it")
		}
		r := await(t, ch, "waiter after the Relock")
		if r.err != nil {
			t.Fatalf("waiter after the Relock: %v", r.err)
		}
		l, err := a.Acquire(ctx, key, excl(0))
		expectNotAcquired(t, "try by the relocking client while the waiter holds", l, err)
		mustRelease(t, r.lease)
		s.expectFree(t, key, "after the waiter released")
	})

	t.Run("Lost", func(t *testing.T) {
		if s.h.KillHolder == nil {
			t.Skip("Harness.KillHolder is nil: the harness cannot end the holder's session")
		}
		key := newKey(t, "")
		l := mustAcquire(t, s.h.New(t), key, excl(0))
		s.h.KillHolder(t, key)
		ctx, cancel := guardCtx()
		defer cancel()
		next, err := l.(store.Relocker).Relock(ctx)
		if next != nil {
			_ = next.Release(context.Background())
			t.Fatal("Relock of a lost lock returned a new lease")
		}
		if !errors.Is(err, kannuki.ErrLockLost) {
			t.Errorf("Relock of a lost lock = %v, want an error matching ErrLockLost", err)
		}
		s.expectFreed(t, key, "after the holder's session was killed")
		s.retake(t, key)
	})
}

// mustRelock relocks l, which must be a Relocker, or fails the test.
func mustRelock(t testing.TB, l store.Lease) store.Lease {
	t.Helper()
	ctx, cancel := guardCtx()
	defer cancel()
	next, err := l.(store.Relocker).Relock(ctx)
	if err != nil {
		t.Fatalf("Relock: %v", err)
	}
	return next
}

// releaseOrRelock releases l, or, for one release in three when l is a
// store.Relocker, relocks it: next is then the lock taken again, or nil
// when another session had it first.
func releaseOrRelock(ctx context.Context, l store.Lease, rng *rand.Rand) (next store.Lease, err error) {
	if r, ok := l.(store.Relocker); ok && rng.IntN(3) == 0 {
		return r.Relock(ctx)
	}
	return nil, l.Release(ctx)
}
