package backendtest

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/kannuki-go/kannuki/store"

	"github.com/kannuki-go/kannuki"
)

// sharedHolders is how many shared holders the shared case stacks up.
const sharedHolders = 5

// testShared: many shared holders at once; exclusive excluded while any
// shared lock is held and shared excluded while an exclusive one is; a
// blocked writer and a blocked reader are handed the lock; nothing is left
// behind (a shared lock released with the exclusive unlock would stay).
// Backends without shared locks must answer ErrUnsupported and hold nothing.
func (s *suite) testShared(t *testing.T) {
	if !s.h.Shared {
		key := newKey(t, "")
		b := s.h.New(t)
		for _, wait := range []time.Duration{0, time.Second, store.WaitForever} {
			ctx, cancel := guardCtx()
			l, err := b.Acquire(ctx, key, shared(wait))
			cancel()
			if err == nil {
				_ = l.Release(context.Background())
				t.Errorf("shared Acquire (wait %s) succeeded on a backend with Harness.Shared false", waitString(wait))
				continue
			}
			if !errors.Is(err, kannuki.ErrUnsupported) {
				t.Errorf("shared Acquire (wait %s): error %v does not match ErrUnsupported", waitString(wait), err)
			}
			checkPlain(t, "shared Acquire", err)
		}
		s.expectFreed(t, key, "after refused shared requests")
		return
	}

	key := newKey(t, "")
	clients := make([]store.Backend, sharedHolders+1)
	for i := range clients {
		clients[i] = s.h.New(t)
	}
	writer := clients[sharedHolders]

	// Readers stack up, some from the same client.
	var leases []store.Lease
	for i := range sharedHolders {
		leases = append(leases, mustAcquire(t, clients[i], key, shared(0)))
		leases = append(leases, mustAcquire(t, clients[i], key, shared(time.Second)))
	}
	done := func() {}
	t.Cleanup(func() { done() })
	done = func() {
		for _, l := range leases {
			_ = l.Release(context.Background())
		}
	}
	s.expectHeld(t, key, "with shared holders")

	ctx, cancel := guardCtx()
	defer cancel()
	l, err := writer.Acquire(ctx, key, excl(0))
	expectNotAcquired(t, "exclusive try while shared held", l, err)
	l, err = writer.Acquire(ctx, key, excl(100*time.Millisecond))
	expectNotAcquired(t, "exclusive wait up to 100ms while shared held", l, err)

	// A blocked writer gets the lock only when the last reader leaves.
	wch := acquireAsync(ctx, writer, key, excl(store.WaitForever))
	expectPending(t, wch, "exclusive waiter while shared held")
	for i, l := range leases {
		if i == len(leases)-1 {
			expectPending(t, wch, "exclusive waiter while one shared holder remains")
		}
		mustRelease(t, l)
	}
	leases = nil
	w := await(t, wch, "exclusive waiter after the readers left")
	if w.err != nil {
		t.Fatalf("exclusive waiter after the readers left: %v", w.err)
	}
	done = func() { _ = w.lease.Release(context.Background()) }

	// Readers are excluded by the writer, then handed the lock together.
	for i := range 2 {
		l, err := clients[i].Acquire(ctx, key, shared(0))
		expectNotAcquired(t, "shared try while exclusive held", l, err)
	}
	rchs := make([]<-chan result, 3)
	for i := range rchs {
		rchs[i] = acquireAsync(ctx, clients[i], key, shared(store.WaitForever))
	}
	for _, ch := range rchs {
		expectPending(t, ch, "shared waiter while exclusive held")
	}
	mustRelease(t, w.lease)
	done = func() {}
	for _, ch := range rchs {
		r := await(t, ch, "shared waiter after the writer left")
		if r.err != nil {
			t.Errorf("shared waiter after the writer left: %v", r.err)
			continue
		}
		leases = append(leases, r.lease)
	}
	done = func() {
		for _, l := range leases {
			_ = l.Release(context.Background())
		}
	}
	s.expectHeld(t, key, "with shared holders again")
	for _, l := range leases {
		mustRelease(t, l)
	}
	leases = nil
	s.expectFree(t, key, "after every shared lease was released")

	// The key works exclusively again: nothing was left behind.
	lw := mustAcquire(t, writer, key, excl(0))
	mustRelease(t, lw)
	s.expectFree(t, key, "after the final exclusive cycle")
}
