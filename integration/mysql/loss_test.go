package mysql

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/kannuki-go/kannuki/store"

	"github.com/kannuki-go/kannuki"
	"github.com/kannuki-go/kannuki/kannukimysql"
)

// TestLockLoss: KILL of the holder's session makes Check fail with
// ErrLockLost and Release report ErrLockLost; through a Locker, fn's
// context is canceled with cause ErrLockLost and WithLock returns an error
// matching ErrLockLost.
func TestLockLoss(t *testing.T) {
	forEachVariant(t, func(t *testing.T, v variant) {
		b, _ := newBackend(t, v, 4, kannukimysql.Options{})
		obs := newObserver(t)

		t.Run("lease", func(t *testing.T) {
			k := uniqueKey(t)
			l := mustAcquire(t, b, k)
			ctx, cancel := guard()
			defer cancel()
			if err := l.(store.Checker).Check(ctx); err != nil {
				t.Fatalf("Check while held: %v", err)
			}
			obs.kill(t, obs.owner(t, k))
			obs.waitFree(t, k)
			if err := l.(store.Checker).Check(ctx); !errors.Is(err, kannuki.ErrLockLost) {
				t.Fatalf("Check after KILL: %v, want ErrLockLost", err)
			}
			if err := l.Release(ctx); !errors.Is(err, kannuki.ErrLockLost) {
				t.Fatalf("Release after KILL: %v, want ErrLockLost", err)
			}
		})

		t.Run("locker", func(t *testing.T) {
			k := uniqueKey(t)
			locker := kannuki.New(b, kannuki.Options{KeepaliveInterval: 100 * time.Millisecond})
			ctx, cancel := guard()
			defer cancel()
			started := make(chan struct{})
			var cause error
			errc := make(chan error, 1)
			go func() {
				errc <- locker.WithLock(ctx, k.String, func(fctx context.Context) error {
					close(started)
					select {
					case <-fctx.Done():
						cause = context.Cause(fctx)
						return fctx.Err()
					case <-time.After(20 * time.Second):
						return errors.New("fn's context was not canceled within 20 s")
					}
				})
			}()
			<-started
			obs.kill(t, obs.owner(t, k))
			err := <-errc
			if !errors.Is(err, kannuki.ErrLockLost) {
				t.Fatalf("WithLock: %v, want ErrLockLost", err)
			}
			if !errors.Is(cause, kannuki.ErrLockLost) {
				t.Fatalf("fn's context cause: %v, want ErrLockLost", cause)
			}
			obs.waitFree(t, k)
		})
	})
}

// TestWatchdog: with a ReleaseTimeout far too short for any round trip,
// the watchdog ends sessions in the middle of tries and releases. Every
// Acquire still either succeeds with the lock held or fails with nothing
// held, and every Release leaves nothing held.
func TestWatchdog(t *testing.T) {
	b, _ := newBackend(t, variants[0], 4, kannukimysql.Options{ReleaseTimeout: time.Nanosecond})
	obs := newObserver(t)
	k := uniqueKey(t)
	fired := 0
	for range 30 {
		ctx, cancel := guard()
		l, err := b.Acquire(ctx, k, exclusive(0))
		cancel()
		owner := obs.owner(t, k)
		switch {
		case err != nil && owner != 0:
			t.Fatalf("Acquire failed (%v) but session %d holds the lock", err, owner)
		case err != nil:
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("Acquire: %v, want a watchdog timeout", err)
			}
			fired++
			continue
		case owner == 0:
			t.Fatal("Acquire succeeded but nobody holds the lock")
		}
		if err := l.Release(context.Background()); err != nil {
			fired++
		}
		if o := obs.owner(t, k); o != 0 {
			t.Fatalf("held by %d after Release", o)
		}
	}
	t.Logf("the watchdog fired in %d of 30 cycles", fired)
}
