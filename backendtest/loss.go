package backendtest

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/kannuki-go/kannuki/keys"
	"github.com/kannuki-go/kannuki/store"

	"github.com/kannuki-go/kannuki"
)

// keepalive is the Locker's keepalive interval in the lock-loss cases.
const keepalive = 100 * time.Millisecond

// newLocker returns a Locker on a fresh client with a unique key prefix,
// so that the cases can use readable keys.
func (s *suite) newLocker(t testing.TB, b store.Backend, prefix string, keepaliveInterval time.Duration) *kannuki.Locker {
	t.Helper()
	if b == nil {
		b = s.h.New(t)
	}
	if prefix == "" {
		prefix = "kannuki-backendtest-" + randSuffix()
	}
	return kannuki.New(b, kannuki.Options{KeyPrefix: prefix, Keys: keys.Ruby{}, KeepaliveInterval: keepaliveInterval})
}

// lockerKey is the Key the Locker l derives for name.
func lockerKey(t testing.TB, l *kannuki.Locker, name string) store.Key {
	t.Helper()
	k, err := l.Key(name)
	if err != nil {
		t.Fatalf("Key(%q): %v", name, err)
	}
	return k
}

// testLockLoss: when the store session holding a lock is killed, the
// Locker's keepalive notices: WithLock cancels fn's context with cause
// ErrLockLost and returns an error matching ErrLockLost; a Handle's Lost
// channel closes and Err matches ErrLockLost; the key can be taken again.
func (s *suite) testLockLoss(t *testing.T) {
	if s.h.KillHolder == nil {
		t.Skip("Harness.KillHolder is nil: the harness cannot end the holder's session")
	}

	t.Run("WithLock", func(t *testing.T) {
		l := s.newLocker(t, nil, "", keepalive)
		key := lockerKey(t, l, "loss")
		ctx, cancel := guardCtx()
		defer cancel()

		inside := make(chan struct{})
		type outcome struct {
			ctxErr, cause error
			err           error
		}
		ch := make(chan outcome, 1)
		go func() {
			var o outcome
			o.err = l.WithLock(ctx, "loss", func(fctx context.Context) error {
				close(inside)
				select {
				case <-fctx.Done():
					o.ctxErr, o.cause = fctx.Err(), context.Cause(fctx)
					return fctx.Err()
				case <-time.After(hangGuard):
					return errors.New("fn's context was not cancelled after the lock was lost")
				}
			})
			ch <- o
		}()
		select {
		case <-inside:
		case o := <-ch:
			t.Fatalf("WithLock returned before running fn: %v", o.err)
		}
		s.expectHeld(t, key, "inside WithLock")
		s.h.KillHolder(t, key)

		var o outcome
		select {
		case o = <-ch:
		case <-time.After(hangGuard + 5*time.Second):
			t.Fatal("WithLock did not return after its lock was lost")
		}
		if o.ctxErr == nil {
			t.Errorf("fn's context was not cancelled; WithLock returned %v", o.err)
		}
		if !errors.Is(o.cause, kannuki.ErrLockLost) {
			t.Errorf("context.Cause of fn's context = %v, want an error matching ErrLockLost", o.cause)
		}
		if !errors.Is(o.err, kannuki.ErrLockLost) {
			t.Errorf("WithLock after the lock was lost returned %v, want an error matching ErrLockLost", o.err)
		} else {
			checkPrefix(t, "WithLock after loss", o.err)
		}
		s.expectFreed(t, key, "after the holder's session was killed")
		s.retake(t, key)
	})

	t.Run("Acquire", func(t *testing.T) {
		l := s.newLocker(t, nil, "", keepalive)
		key := lockerKey(t, l, "loss")
		ctx, cancel := guardCtx()
		defer cancel()
		h, err := l.Acquire(ctx, "loss")
		if err != nil {
			t.Fatalf("Acquire: %v", err)
		}
		defer h.Release(context.Background())
		if h.Err() != nil {
			t.Errorf("Err before any loss = %v, want nil", h.Err())
		}
		s.expectHeld(t, key, "after Acquire")
		s.h.KillHolder(t, key)
		select {
		case <-h.Lost():
		case <-time.After(hangGuard):
			t.Fatal("Lost() did not close after the holder's session was killed")
		}
		if !errors.Is(h.Err(), kannuki.ErrLockLost) {
			t.Errorf("Err after loss = %v, want an error matching ErrLockLost", h.Err())
		}
		if err := h.Release(context.Background()); err != nil && !errors.Is(err, kannuki.ErrLockLost) {
			t.Errorf("Release of a lost lock = %v, want nil or an error matching ErrLockLost", err)
		}
		s.expectFreed(t, key, "after the holder's session was killed")
		s.retake(t, key)
	})
}

// retake checks that a new client can take and give back key.
func (s *suite) retake(t testing.TB, key store.Key) {
	t.Helper()
	l := mustAcquire(t, s.h.New(t), key, excl(0))
	mustRelease(t, l)
	s.expectFree(t, key, "after retaking the key")
}
