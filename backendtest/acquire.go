package backendtest

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/kannuki-go/kannuki/store"

	"github.com/kannuki-go/kannuki"
)

// testTry: a single try fails at once with ErrNotAcquired while the key is
// held, from another client and from the holder's own client (a Backend is
// not re-entrant; the Locker is), and succeeds once it is free.
func (s *suite) testTry(t *testing.T) {
	key := newKey(t, "")
	a, b := s.h.New(t), s.h.New(t)

	s.expectFree(t, key, "before any lock")
	la := mustAcquire(t, a, key, excl(0))
	done := releaseLater(t, la)
	s.expectHeld(t, key, "after a successful try")

	for _, c := range []struct {
		name string
		b    store.Backend
	}{{"another client", b}, {"the holder's own client", a}} {
		ctx, cancel := guardCtx()
		l, err := c.b.Acquire(ctx, key, excl(0))
		cancel()
		expectNotAcquired(t, "try by "+c.name+" while held", l, err)
	}

	mustRelease(t, la)
	done()
	s.expectFree(t, key, "after Release")

	lb := mustAcquire(t, b, key, excl(0))
	s.expectHeld(t, key, "after a try on the released key")
	mustRelease(t, lb)
	s.expectFree(t, key, "after the second Release")
}

// testTimeout: a wait of up to d on a held key returns ErrNotAcquired, not
// sooner than d; a wait on a free key succeeds. Budgets below and above one
// second catch stores that count whole seconds (MySQL GET_LOCK).
func (s *suite) testTimeout(t *testing.T) {
	key := newKey(t, "")
	a, b := s.h.New(t), s.h.New(t)
	la := mustAcquire(t, a, key, excl(store.WaitForever))
	done := releaseLater(t, la)

	for _, d := range []time.Duration{30 * time.Millisecond, 300 * time.Millisecond, 1200 * time.Millisecond} {
		ctx, cancel := context.WithTimeout(context.Background(), d+hangGuard)
		start := time.Now()
		l, err := b.Acquire(ctx, key, excl(d))
		took := time.Since(start)
		cancel()
		expectNotAcquired(t, "wait up to "+d.String()+" on a held key", l, err)
		if took < d {
			t.Errorf("wait up to %s returned after %s, sooner than its budget", d, took)
		}
	}
	s.expectHeld(t, key, "after the waits timed out")
	mustRelease(t, la)
	done()
	s.expectFreed(t, key, "after the holder released (timed-out waiters must hold nothing)")

	lb := mustAcquire(t, b, key, excl(5*time.Second))
	s.expectHeld(t, key, "after a timed wait on a free key")
	mustRelease(t, lb)
	s.expectFree(t, key, "after Release")
}

// testCancel: cancelling the context of a waiting Acquire ends it with an
// error matching context.Canceled, and the waiter holds nothing afterwards,
// which shows once the holder releases.
func (s *suite) testCancel(t *testing.T) {
	for _, c := range []struct {
		name string
		wait time.Duration
	}{{"WaitForever", store.WaitForever}, {"WaitUpTo", time.Minute}} {
		t.Run(c.name, func(t *testing.T) {
			key := newKey(t, "")
			a, b := s.h.New(t), s.h.New(t)
			la := mustAcquire(t, a, key, excl(store.WaitForever))
			done := releaseLater(t, la)

			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			ch := acquireAsync(ctx, b, key, excl(c.wait))
			expectPending(t, ch, "waiter before cancel")
			cancel()
			r := await(t, ch, "waiter after cancel")
			if r.err == nil {
				_ = r.lease.Release(context.Background())
				t.Fatalf("cancelled waiter acquired a lock that was held")
			}
			if !errors.Is(r.err, context.Canceled) {
				t.Errorf("cancelled waiter: error %v does not match context.Canceled", r.err)
			}
			checkPlain(t, "cancelled waiter", r.err)

			s.expectHeld(t, key, "holder after the waiter gave up")
			mustRelease(t, la)
			done()
			s.expectFreed(t, key, "after the holder released (the cancelled waiter must hold nothing)")

			// Already cancelled before the call: nothing is acquired.
			l, err := b.Acquire(ctx, key, excl(c.wait))
			if err == nil {
				_ = l.Release(context.Background())
				t.Errorf("Acquire with an already cancelled context succeeded")
			} else if !errors.Is(err, context.Canceled) {
				t.Errorf("Acquire with an already cancelled context: error %v does not match context.Canceled", err)
			}
			s.expectFreed(t, key, "after an Acquire with a cancelled context")
		})
	}
}

// testDeadline: a context deadline bounds a wait that asks to wait forever,
// or longer than the deadline.
func (s *suite) testDeadline(t *testing.T) {
	key := newKey(t, "")
	a, b := s.h.New(t), s.h.New(t)
	la := mustAcquire(t, a, key, excl(store.WaitForever))
	done := releaseLater(t, la)

	const d = 300 * time.Millisecond
	for _, wait := range []time.Duration{store.WaitForever, time.Minute} {
		ctx, cancel := context.WithTimeout(context.Background(), d)
		ch := acquireAsync(ctx, b, key, excl(wait))
		r := await(t, ch, "waiter with a context deadline")
		cancel()
		if r.err == nil {
			_ = r.lease.Release(context.Background())
			t.Fatalf("waiter (wait %s) with a deadline acquired a held lock", waitString(wait))
		}
		// The backend may turn the deadline into a server-side timeout
		// that fires a hair before the context does: either error is right.
		if !errors.Is(r.err, context.DeadlineExceeded) && !errors.Is(r.err, kannuki.ErrNotAcquired) {
			t.Errorf("waiter (wait %s) past its deadline: error %v matches neither context.DeadlineExceeded nor ErrNotAcquired", waitString(wait), r.err)
		}
		checkPlain(t, "waiter past its deadline", r.err)
		// A sanity bound only, far below d: a backend that ignores the
		// wait and fails at once is wrong.
		if r.took < d/2 {
			t.Errorf("waiter (wait %s) with a %s deadline returned after only %s", waitString(wait), d, r.took)
		}
	}
	mustRelease(t, la)
	done()
	s.expectFreed(t, key, "after the holder released (waiters past their deadline must hold nothing)")
}

// testHandoff: a blocked waiter gets the lock once the holder releases, not
// before, whether it waits forever or up to a budget.
func (s *suite) testHandoff(t *testing.T) {
	for _, c := range []struct {
		name string
		wait time.Duration
	}{{"WaitForever", store.WaitForever}, {"WaitUpTo", time.Minute}} {
		t.Run(c.name, func(t *testing.T) {
			key := newKey(t, "")
			a, b := s.h.New(t), s.h.New(t)
			la := mustAcquire(t, a, key, excl(store.WaitForever))
			done := releaseLater(t, la)

			ctx, cancel := guardCtx()
			defer cancel()
			ch := acquireAsync(ctx, b, key, excl(c.wait))
			expectPending(t, ch, "waiter while the lock is held")
			mustRelease(t, la)
			done()
			r := await(t, ch, "waiter after the holder released")
			if r.err != nil {
				t.Fatalf("waiter after the holder released: %v", r.err)
			}
			s.expectHeld(t, key, "waiter after handoff")

			// The new holder excludes the old one.
			l, err := a.Acquire(ctx, key, excl(0))
			expectNotAcquired(t, "try by the previous holder after handoff", l, err)

			mustRelease(t, r.lease)
			s.expectFree(t, key, "after the waiter released")
		})
	}
}

// testRelease: a lease outlives the context it was acquired with, and
// Release works with an already cancelled context.
func (s *suite) testRelease(t *testing.T) {
	key := newKey(t, "")
	a, b := s.h.New(t), s.h.New(t)

	ctx, cancel := context.WithCancel(context.Background())
	l, err := a.Acquire(ctx, key, excl(store.WaitForever))
	if err != nil {
		cancel()
		t.Fatalf("Acquire: %v", err)
	}
	done := releaseLater(t, l)
	cancel()
	s.expectHeld(t, key, "after the acquiring context was cancelled (a lease outlives it)")
	l2, err := b.Acquire(context.Background(), key, excl(0))
	expectNotAcquired(t, "try while held (acquiring context cancelled)", l2, err)

	if err := l.Release(ctx); err != nil {
		t.Errorf("Release with a cancelled context: %v", err)
	}
	done()
	s.expectFree(t, key, "after Release with a cancelled context")

	// Timed-out context too, and the key is usable afterwards.
	ctx2, cancel2 := context.WithTimeout(context.Background(), time.Nanosecond)
	defer cancel2()
	l3 := mustAcquire(t, b, key, excl(0))
	<-ctx2.Done()
	if err := l3.Release(ctx2); err != nil {
		t.Errorf("Release with an expired context: %v", err)
	}
	s.expectFree(t, key, "after Release with an expired context")
	l4 := mustAcquire(t, a, key, excl(0))
	mustRelease(t, l4)
	s.expectFree(t, key, "after the last Release")
}
