package kannuki_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kannuki-go/kannuki"
	"github.com/kannuki-go/kannuki/internal/saidonce"
	"github.com/kannuki-go/kannuki/kannukimem"
)

// Goroutines that fn starts, each calling WithLock on the same key with a
// context derived from fn's, are nested calls: they do not wait for the
// store (fn holds the lock), and they run one at a time among themselves.
func TestReentryAcrossGoroutinesTakesTurns(t *testing.T) {
	l := kannuki.New(kannukimem.New(), kannuki.Options{})
	ctx := context.Background()
	const workers, rounds = 8, 50
	var inside, most, ran atomic.Int32
	err := l.WithLock(ctx, "k", func(ctx context.Context) error {
		gctx, cancel := context.WithCancel(ctx) // as errgroup.WithContext does
		defer cancel()
		var wg sync.WaitGroup
		for range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range rounds {
					err := l.WithLock(gctx, "k", func(context.Context) error {
						n := inside.Add(1)
						for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
						}
						time.Sleep(10 * time.Microsecond)
						inside.Add(-1)
						ran.Add(1)
						return nil
					})
					if err != nil {
						t.Error(err)
					}
				}
			}()
		}
		wg.Wait()
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if most.Load() != 1 || ran.Load() != workers*rounds {
		t.Fatalf("%d nested calls ran, at most %d at once; want %d, one at a time", ran.Load(), most.Load(), workers*rounds)
	}
}

// A nested call's own nested calls take turns under it, so re-entering
// deeper on the same goroutine does not wait for itself.
func TestReentryDeeperDoesNotWaitForItself(t *testing.T) {
	l := kannuki.New(kannukimem.New(), kannuki.Options{})
	depth := 0
	var enter func(ctx context.Context) error
	enter = func(ctx context.Context) error {
		depth++
		if depth == 5 {
			return nil
		}
		return l.WithLock(ctx, "k", enter, kannuki.Timeout(time.Second))
	}
	if err := l.WithLock(context.Background(), "k", enter); err != nil || depth != 5 {
		t.Fatalf("depth %d: %v", depth, err)
	}
}

// A nested TryLock while another nested call runs reports false, like a
// try on a held key; a bounded nested wait runs out with ReasonTimeout.
func TestReentryTryAndTimeoutWhileATurnIsTaken(t *testing.T) {
	l := kannuki.New(kannukimem.New(), kannuki.Options{})
	err := l.WithLock(context.Background(), "k", func(ctx context.Context) error {
		inTurn, leave := make(chan struct{}), make(chan struct{})
		done := make(chan error, 1)
		go func() {
			done <- l.WithLock(ctx, "k", func(context.Context) error {
				close(inTurn)
				<-leave
				return nil
			})
		}()
		<-inTurn
		ok, err := l.TryLock(ctx, "k", func(context.Context) error { return errors.New("ran during another's turn") })
		if ok || err != nil {
			t.Errorf("nested TryLock during another's turn = %v, %v; want false, nil", ok, err)
		}
		err = l.WithLock(ctx, "k", func(context.Context) error { return nil }, kannuki.Timeout(20*time.Millisecond))
		var na *kannuki.NotAcquiredError
		if !errors.As(err, &na) || na.Reason != kannuki.ReasonTimeout {
			t.Errorf("bounded nested wait = %v; want reason timeout", err)
		}
		close(leave)
		return <-done
	})
	if err != nil {
		t.Fatal(err)
	}
}

// A context that outlives its lock grants nothing: a call on it after the
// lock ended fails with a kannuki error matching ErrNotAcquired, without
// running fn, and without taking the lock from the store.
func TestReentryAfterTheLockEnded(t *testing.T) {
	l := kannuki.New(kannukimem.New(), kannuki.Options{})
	var kept context.Context
	if err := l.WithLock(context.Background(), "k", func(ctx context.Context) error { kept = ctx; return nil }); err != nil {
		t.Fatal(err)
	}
	ran := false
	err := l.WithLock(kept, "k", func(context.Context) error { ran = true; return nil })
	if ran || !errors.Is(err, kannuki.ErrNotAcquired) {
		t.Fatalf("call on an ended lock's context: ran %v, %v; want ErrNotAcquired", ran, err)
	}
	checkSaidOnce(t, err)
	if held, _ := l.Held(context.Background(), "k"); held {
		t.Fatal("the call took the lock")
	}
}

// checkSaidOnce fails t if err's message does not start with "kannuki:"
// and say each thing once.
func checkSaidOnce(t *testing.T, err error) {
	t.Helper()
	if p := saidonce.Problem(err.Error()); p != "" {
		t.Errorf("%q: %s", err, p)
	}
}
