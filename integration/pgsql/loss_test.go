package pgsql

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/kannuki-go/kannuki/store"

	"github.com/kannuki-go/kannuki"
)

// terminate ends the session holding k, behind its holder's back.
func (o *observer) terminate(t testing.TB, k store.Key) {
	t.Helper()
	pids := o.holderPIDs(t, k)
	if len(pids) != 1 {
		t.Fatalf("holders of %q: %v, want one", k.String, pids)
	}
	var ok bool
	if err := o.db.QueryRow("SELECT pg_terminate_backend($1, 10000)", pids[0]).Scan(&ok); err != nil || !ok {
		t.Fatalf("pg_terminate_backend(%d) = %v, %v", pids[0], ok, err)
	}
}

// TestLockLoss: pg_terminate_backend on the holder's session makes Check
// fail with ErrLockLost (and destroys the connection), Release then reports
// the loss, and a Locker cancels fn's context and returns ErrLockLost.
func TestLockLoss(t *testing.T) {
	forEachDriver(t, func(t *testing.T, d driver) {
		b, db := newBackend(t, d, 4)
		obs := newObserver(t)

		t.Run("check", func(t *testing.T) {
			k := uniqueKey(t)
			l := mustAcquire(t, b, k, store.Request{})
			obs.terminate(t, k)
			if err := l.(store.Checker).Check(ctxT(t, 10*time.Second)); !errors.Is(err, kannuki.ErrLockLost) {
				t.Fatalf("Check after the session was terminated: %v; want ErrLockLost", err)
			}
			if err := l.Release(context.Background()); !errors.Is(err, kannuki.ErrLockLost) {
				t.Fatalf("Release after a failed Check: %v; want ErrLockLost", err)
			}
			if n := obs.held(t, k); n != 0 {
				t.Fatalf("%d holders", n)
			}
		})
		t.Run("release", func(t *testing.T) {
			k := uniqueKey(t)
			l := mustAcquire(t, b, k, store.Request{Mode: store.ModeShared})
			obs.terminate(t, k)
			if err := l.Release(context.Background()); !errors.Is(err, kannuki.ErrLockLost) {
				t.Fatalf("Release after the session was terminated: %v; want ErrLockLost", err)
			}
		})
		t.Run("locker", func(t *testing.T) {
			const every = 100 * time.Millisecond
			lk := kannuki.New(b, kannuki.Options{KeepaliveInterval: every})
			name := uniqueKey(t).String
			k, err := lk.Key(name)
			if err != nil {
				t.Fatal(err)
			}
			started := make(chan struct{})
			var cause error
			done := make(chan error, 1)
			go func() {
				done <- lk.WithLock(ctxT(t, 30*time.Second), name, func(ctx context.Context) error {
					close(started)
					select {
					case <-ctx.Done():
						cause = context.Cause(ctx)
						return ctx.Err()
					case <-time.After(20 * time.Second):
						return errors.New("fn's context was not canceled within 20s of the loss")
					}
				})
			}()
			<-started
			killed := time.Now()
			obs.terminate(t, k)
			select {
			case err := <-done:
				if !errors.Is(err, kannuki.ErrLockLost) {
					t.Fatalf("WithLock after the holder's session was terminated: %v; want ErrLockLost", err)
				}
				if !errors.Is(cause, kannuki.ErrLockLost) {
					t.Fatalf("fn's context cause: %v; want ErrLockLost", cause)
				}
				t.Logf("loss reported %s after pg_terminate_backend (keepalive every %s)", time.Since(killed), every)
			case <-time.After(20 * time.Second):
				t.Fatal("WithLock did not return within 20s of the loss")
			}
			if n := obs.held(t, k); n != 0 {
				t.Fatalf("%d holders", n)
			}
		})
		assertPoolClean(t, db)
	})
}
