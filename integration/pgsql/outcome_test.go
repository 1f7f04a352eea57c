package pgsql

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/kannuki-go/kannuki/store"

	"github.com/kannuki-go/kannuki"
	"github.com/kannuki-go/kannuki/kannukipg"
)

// TestWaitFailureKeepsOrDestroys: a wait the server answered (lock_timeout
// 55P03, or a pg_cancel_backend from someone else, 57014) can have been
// granted at the last moment, so the Backend looks and unlocks on the
// still usable session, then pools the connection; a wait whose session
// ended (pg_terminate_backend) is in doubt and its connection destroyed.
// The lock-table-full refusal, the third class, is TestLockTableFull.
func TestWaitFailureKeepsOrDestroys(t *testing.T) {
	forEachDriver(t, func(t *testing.T, d driver) {
		obs := newObserver(t)
		db := openDB(t, d, 3)
		db.SetMaxIdleConns(3)
		warm(t, db, 2)
		b := kannukipg.New(db, kannukipg.Options{})
		other, _ := newBackend(t, d, 2)
		open := func() int { return db.Stats().OpenConnections }

		k := uniqueKey(t)
		holder := mustAcquire(t, other, k, store.Request{})
		defer mustRelease(t, holder)

		before := open()
		if _, err := b.Acquire(ctxT(t, time.Minute), k, store.Request{Wait: 50 * time.Millisecond}); !errors.Is(err, kannuki.ErrNotAcquired) {
			t.Fatalf("a timed wait on a held key: %v; want ErrNotAcquired", err)
		}
		if n := open(); n != before {
			t.Fatalf("lock_timeout: %d open connections, want %d (pooled)", n, before)
		}

		waitOn := func() chan error {
			done := make(chan error, 1)
			go func() {
				l, err := b.Acquire(context.Background(), k, store.Request{Wait: store.WaitForever})
				if l != nil {
					_ = l.Release(context.Background())
				}
				done <- err
			}()
			eventually(t, watchGuard, "the wait to reach the server", func() bool { return obs.waiting(t, k) == 1 })
			return done
		}
		waiterPID := func() int64 {
			var pid int64
			if err := obs.db.QueryRow("SELECT pid FROM pg_locks WHERE " + where(k) + " AND NOT granted").Scan(&pid); err != nil {
				t.Fatal(err)
			}
			return pid
		}

		done := waitOn()
		if _, err := obs.db.Exec("SELECT pg_cancel_backend($1)", waiterPID()); err != nil {
			t.Fatal(err)
		}
		if err := <-done; err == nil {
			t.Fatal("a wait canceled by pg_cancel_backend returned a lock")
		}
		if n := open(); n != before {
			t.Fatalf("57014: %d open connections, want %d (pooled)", n, before)
		}

		done = waitOn()
		if _, err := obs.db.Exec("SELECT pg_terminate_backend($1, 10000)", waiterPID()); err != nil {
			t.Fatal(err)
		}
		if err := <-done; err == nil {
			t.Fatal("a wait whose session was terminated returned a lock")
		}
		if n := open(); n != before-1 {
			t.Fatalf("57P01: %d open connections, want %d (destroyed)", n, before-1)
		}
		assertPoolClean(t, db)
	})
}
