package backendtest

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/kannuki-go/kannuki"
)

// testLocker: the Locker's own promises hold on this backend: argument
// checks, fn's result, TryLock's (false, nil), panics, re-entrancy,
// mutex-like waiting between goroutines, Handle release semantics, and
// shared requests on a backend without them.
func (s *suite) testLocker(t *testing.T) {
	// Two clients sharing a key prefix.
	prefix := "kannuki-backendtest-" + randSuffix()
	l := s.newLocker(t, nil, prefix, 0)
	other := s.newLocker(t, nil, prefix, 0)

	t.Run("InvalidArguments", func(t *testing.T) {
		ctx, cancel := guardCtx()
		defer cancel()
		key := "invalid-arguments"
		expectInvalid := func(call string, err error) {
			t.Helper()
			if !errors.Is(err, kannuki.ErrInvalidArgument) {
				t.Errorf("%s: error %v does not match ErrInvalidArgument", call, err)
			}
		}
		expectInvalid("WithLock(nil fn)", l.WithLock(ctx, key, nil))
		_, err := l.TryLock(ctx, key, nil)
		expectInvalid("TryLock(nil fn)", err)
		expectInvalid("Lock(nil fn)", l.WithLock(ctx, key, nil))

		ran := false
		fn := func(context.Context) error { ran = true; return nil }
		expectInvalid("WithLock(Timeout(-1s))", l.WithLock(ctx, key, fn, kannuki.Timeout(-time.Second)))
		h, err := l.Acquire(ctx, key, kannuki.Timeout(-time.Nanosecond))
		expectInvalid("Acquire(Timeout(-1ns))", err)
		if h != nil {
			_ = h.Release(ctx)
		}
		if ran {
			t.Error("fn ran despite an invalid argument")
		}
		s.expectFree(t, lockerKey(t, l, key), "after calls with invalid arguments")
	})

	t.Run("Results", func(t *testing.T) {
		ctx, cancel := guardCtx()
		defer cancel()
		key := "results"
		k := lockerKey(t, l, key)
		sentinel := errors.New("fn failed")
		err := l.WithLock(ctx, key, func(context.Context) error {
			s.expectHeld(t, k, "inside WithLock")
			return sentinel
		})
		if !errors.Is(err, sentinel) {
			t.Errorf("WithLock returned %v, want fn's error", err)
		}
		s.expectFree(t, k, "after WithLock whose fn failed")

		h, err := l.Acquire(ctx, key)
		if err != nil {
			t.Fatalf("Acquire: %v", err)
		}
		ran := false
		ok, err := other.TryLock(ctx, key, func(context.Context) error { ran = true; return nil })
		if ok || err != nil || ran {
			t.Errorf("TryLock by another client while held = %v, %v (fn ran: %v); want false, nil", ok, err, ran)
		}
		err = other.WithLock(ctx, key, func(context.Context) error { ran = true; return nil }, kannuki.Timeout(50*time.Millisecond))
		var na *kannuki.NotAcquiredError
		if !errors.As(err, &na) || ran {
			t.Errorf("WithLock(Timeout(50ms)) by another client while held = %v (fn ran: %v); want a *NotAcquiredError", err, ran)
		}
		if err := h.Release(ctx); err != nil {
			t.Errorf("Release: %v", err)
		}
		ok, err = other.TryLock(ctx, key, func(context.Context) error { ran = true; return nil })
		if !ok || err != nil || !ran {
			t.Errorf("TryLock on a free key = %v, %v (fn ran: %v); want true, nil", ok, err, ran)
		}
		s.expectFree(t, k, "after TryLock")
	})

	t.Run("Panic", func(t *testing.T) {
		ctx, cancel := guardCtx()
		defer cancel()
		key := "panic"
		k := lockerKey(t, l, key)
		type boom struct{}
		got := func() (v any) {
			defer func() { v = recover() }()
			_ = l.WithLock(ctx, key, func(context.Context) error {
				s.expectHeld(t, k, "inside the panicking fn")
				panic(boom{})
			})
			return nil
		}()
		if _, ok := got.(boom); !ok {
			t.Errorf("WithLock whose fn panicked: recovered %v, want the panic value", got)
		}
		s.expectFree(t, k, "after a panic in fn")
		ok, err := other.TryLock(ctx, key, func(context.Context) error { return nil })
		if !ok || err != nil {
			t.Errorf("TryLock after a panic = %v, %v; want true, nil", ok, err)
		}
	})

	t.Run("Reentrant", func(t *testing.T) {
		key := "reentrant"
		k := lockerKey(t, l, key)
		ctx, cancel := guardCtx()
		defer cancel()
		done := make(chan error, 1)
		depth := 0
		go func() {
			done <- l.WithLock(ctx, key, func(ctx context.Context) error {
				depth++
				return l.WithLock(ctx, key, func(ctx context.Context) error {
					depth++
					ok, err := l.TryLock(ctx, key, func(context.Context) error { depth++; return nil })
					if !ok || err != nil {
						return errors.Join(errors.New("nested TryLock not re-entrant"), err)
					}
					return l.WithLock(ctx, key, func(context.Context) error { depth++; return nil }, kannuki.Timeout(0))
				})
			})
		}()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("nested calls with fn's context: %v", err)
			}
			if depth != 4 {
				t.Errorf("nested calls ran %d functions, want 4", depth)
			}
		case <-time.After(hangGuard):
			t.Fatal("nested WithLock with fn's context deadlocked")
		}
		s.expectFree(t, k, "after the nested calls")
	})

	t.Run("Mutex", func(t *testing.T) {
		key := "mutex"
		k := lockerKey(t, l, key)
		ctx, cancel := guardCtx()
		defer cancel()
		inside, leave := make(chan struct{}), make(chan struct{})
		first := make(chan error, 1)
		go func() {
			first <- l.WithLock(ctx, key, func(context.Context) error {
				close(inside)
				<-leave
				return nil
			})
		}()
		<-inside
		// Same Locker, another goroutine, a context without the mark:
		// it waits for the key like for a mutex.
		entered := make(chan struct{})
		second := make(chan error, 1)
		go func() {
			second <- l.WithLock(ctx, key, func(context.Context) error {
				close(entered)
				return nil
			})
		}()
		select {
		case <-entered:
			t.Error("a second goroutine entered while the first held the key")
		case err := <-second:
			t.Errorf("a second goroutine returned %v while the first held the key; want it to wait", err)
		case <-time.After(settle):
		}
		close(leave)
		if err := <-first; err != nil {
			t.Errorf("first WithLock: %v", err)
		}
		select {
		case err := <-second:
			if err != nil {
				t.Errorf("second WithLock: %v", err)
			}
		case <-time.After(hangGuard):
			t.Fatal("the second goroutine did not get the key after the first released it")
		}
		s.expectFree(t, k, "after both goroutines")
	})

	t.Run("HandleRelease", func(t *testing.T) {
		key := "handle-release"
		k := lockerKey(t, l, key)
		ctx, cancel := context.WithCancel(context.Background())
		h, err := l.Acquire(ctx, key)
		if err != nil {
			cancel()
			t.Fatalf("Acquire: %v", err)
		}
		cancel()
		select {
		case <-h.Lost():
			t.Error("Lost() closed for a lock that is held")
		default:
		}
		s.expectHeld(t, k, "after the acquiring context was cancelled")
		if err := h.Release(ctx); err != nil {
			t.Errorf("Release with a cancelled context: %v", err)
		}
		if err := h.Release(ctx); err != nil {
			t.Errorf("second Release: %v, want nil (Release is idempotent)", err)
		}
		if h.Err() != nil {
			t.Errorf("Err after a clean release = %v, want nil", h.Err())
		}
		s.expectFree(t, k, "after Release")
	})

	t.Run("Shared", func(t *testing.T) {
		ctx, cancel := guardCtx()
		defer cancel()
		key := "shared"
		if !s.h.Shared {
			err := l.WithLock(ctx, key, func(context.Context) error { return nil }, kannuki.Shared())
			if !errors.Is(err, kannuki.ErrUnsupported) {
				t.Errorf("WithLock(Shared()) = %v, want an error matching ErrUnsupported", err)
			}
			return
		}
		h1, err := l.Acquire(ctx, key, kannuki.Shared())
		if err != nil {
			t.Fatalf("Acquire(Shared()): %v", err)
		}
		defer h1.Release(ctx)
		h2, err := other.Acquire(ctx, key, kannuki.Shared(), kannuki.Timeout(0))
		if err != nil {
			t.Fatalf("second TryAcquire(Shared()): %v", err)
		}
		defer h2.Release(ctx)
		if h, err := other.Acquire(ctx, key, kannuki.Timeout(0)); !errors.Is(err, kannuki.ErrNotAcquired) {
			if h != nil {
				_ = h.Release(ctx)
			}
			t.Errorf("exclusive TryAcquire while shared held = %v, want ErrNotAcquired", err)
		}
		// Upgrading the chain's own shared lock would wait for itself.
		err = l.WithLock(ctx, key+"-nested", func(ctx context.Context) error {
			return l.WithLock(ctx, key+"-nested", func(context.Context) error { return nil })
		}, kannuki.Shared())
		if !errors.Is(err, kannuki.ErrDeadlock) {
			t.Errorf("nested exclusive WithLock inside a shared one = %v, want ErrDeadlock", err)
		}
		for _, h := range []*kannuki.Handle{h1, h2} {
			if err := h.Release(ctx); err != nil {
				t.Errorf("Release: %v", err)
			}
		}
		s.expectFree(t, lockerKey(t, l, key), "after the shared handles were released")
		s.expectFree(t, lockerKey(t, l, key+"-nested"), "after the refused upgrade")
	})
}
