package pgsql

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/kannuki-go/kannuki/store"

	"github.com/kannuki-go/kannuki"
	"github.com/kannuki-go/kannuki/kannukipg"
)

// TestSmallPools: with pools of 1 and 2 connections every call returns
// (documented behaviour, no hang): each held lock pins a connection; a call
// finding none free does not wait for one at all (a try), waits up to its
// Wait (a bounded wait, even with a longer ConnWait) or as long as its
// context allows (WaitForever), then fails with an error matching both
// ErrNoConnection and ErrNotAcquired; the same rule as kannukipgxv5 and
// kannukimysql.
func TestSmallPools(t *testing.T) {
	const connWait = time.Hour // only a dial could wait this long
	forEachDriver(t, func(t *testing.T, d driver) {
		obs := newObserver(t)
		other, _ := newBackend(t, d, 2) // another client holding locks
		for _, size := range []int{1, 2} {
			db := openDB(t, d, size)
			b := kannukipg.New(db, kannukipg.Options{ConnWait: connWait})
			k := make([]store.Key, 3)
			for i := range k {
				k[i] = uniqueKey(t, string(rune('a'+i)))
			}

			// Pin every connection of the pool.
			var pinned []store.Lease
			for i := range size {
				pinned = append(pinned, mustAcquire(t, b, k[i], store.Request{}))
			}
			free := k[2]

			_, err := b.Acquire(ctxT(t, 30*time.Second), free, store.Request{Wait: 0})
			if !errors.Is(err, kannukipg.ErrNoConnection) || !errors.Is(err, kannuki.ErrNotAcquired) || !errors.Is(err, kannuki.ErrPoolExhausted) {
				t.Fatalf("pool %d, try with every connection pinned: %v; want ErrNoConnection", size, err)
			}
			if want := fmt.Sprintf("all %d connections in use", size); !strings.Contains(err.Error(), want) {
				t.Fatalf("pool %d, try with every connection pinned: %v; want it refused at once (%q)", size, err, want)
			}

			const wait = 400 * time.Millisecond
			start := time.Now()
			_, err = b.Acquire(ctxT(t, 30*time.Second), free, store.Request{Wait: wait})
			if !errors.Is(err, kannukipg.ErrNoConnection) {
				t.Fatalf("pool %d, wait %s: %v; want ErrNoConnection", size, wait, err)
			}
			if !errors.Is(err, kannuki.ErrNotAcquired) || !strings.Contains(err.Error(), "within 400ms") {
				t.Fatalf("pool %d, wait %s: %v; want ErrNotAcquired within its own budget", size, wait, err)
			}
			if el := time.Since(start); el < wait {
				t.Fatalf("pool %d: a wait of %s returned after %s", size, wait, el)
			}

			ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
			_, err = b.Acquire(ctx, free, store.Request{Wait: store.WaitForever})
			cancel()
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("pool %d, WaitForever with a 300ms context: %v; want DeadlineExceeded", size, err)
			}

			// A waiter for a free connection gets the one a release hands back.
			got := make(chan error, 1)
			go func() {
				l, err := b.Acquire(ctxT(t, 30*time.Second), free, store.Request{Wait: store.WaitForever})
				if err == nil {
					err = l.Release(context.Background())
				}
				got <- err
			}()
			time.Sleep(50 * time.Millisecond) // let it queue for the pool (either order is correct)
			for _, l := range pinned {
				mustRelease(t, l)
			}
			select {
			case err := <-got:
				if err != nil {
					t.Fatalf("pool %d: waiter after the release: %v", size, err)
				}
			case <-time.After(10 * time.Second):
				t.Fatalf("pool %d: waiter for a connection not served within 10s of the release", size)
			}

			// A wait for a lock held by another client, canceled, in a pool
			// with no spare connection for pg_cancel_backend: the driver's
			// cancel ends it, the connection is destroyed, the call returns.
			var pins []store.Lease
			for i := range size - 1 {
				pins = append(pins, mustAcquire(t, b, k[i], store.Request{}))
			}
			h := mustAcquire(t, other, free, store.Request{})
			ctx, cancel = context.WithCancel(context.Background())
			errc := make(chan error, 1)
			go func() {
				_, err := b.Acquire(ctx, free, store.Request{Wait: store.WaitForever})
				errc <- err
			}()
			eventually(t, 10*time.Second, "the waiter to queue", func() bool { return obs.waiting(t, free) == 1 })
			cancel()
			select {
			case err := <-errc:
				if !errors.Is(err, context.Canceled) {
					t.Fatalf("pool %d, canceled wait: %v; want context.Canceled", size, err)
				}
			case <-time.After(10 * time.Second):
				t.Fatalf("pool %d: canceled wait did not return within 10s", size)
			}
			// A context deadline needs no second connection: the server's
			// lock_timeout ends the wait and the connection stays pooled.
			ctx, cancel = context.WithTimeout(context.Background(), 200*time.Millisecond)
			_, err = b.Acquire(ctx, free, store.Request{Wait: store.WaitForever})
			cancel()
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("pool %d, wait ended by its deadline: %v", size, err)
			}
			mustRelease(t, h)
			for _, l := range pins {
				mustRelease(t, l)
			}
			// The pool still works and nothing is left behind (the server
			// session of a wait the driver abandoned may take the lock for
			// an instant after the release, then ends).
			eventually(t, 10*time.Second, "the lock to be free", func() bool {
				return obs.held(t, free) == 0 && obs.waiting(t, free) == 0
			})
			l := mustAcquire(t, b, free, store.Request{Wait: 5 * time.Second})
			mustRelease(t, l)
			assertPoolClean(t, db)
		}
	})
}

// TestCancelUsesSpareConnection: with one connection to spare, a canceled
// wait is ended on the server by pg_cancel_backend before Acquire returns:
// no session is left queued for the lock.
func TestCancelUsesSpareConnection(t *testing.T) {
	forEachDriver(t, func(t *testing.T, d driver) {
		obs := newObserver(t)
		other, _ := newBackend(t, d, 2)
		db := openDB(t, d, 2)
		b := kannukipg.New(db, kannukipg.Options{})
		k := uniqueKey(t)
		h := mustAcquire(t, other, k, store.Request{})
		defer mustRelease(t, h)
		for range 5 {
			ctx, cancel := context.WithCancel(context.Background())
			errc := make(chan error, 1)
			go func() {
				_, err := b.Acquire(ctx, k, store.Request{Wait: store.WaitForever})
				errc <- err
			}()
			eventually(t, 10*time.Second, "the waiter to queue", func() bool { return obs.waiting(t, k) == 1 })
			cancel()
			if err := <-errc; !errors.Is(err, context.Canceled) {
				t.Fatalf("canceled wait: %v", err)
			}
			if n := obs.waiting(t, k); n != 0 {
				t.Fatalf("%d sessions still queued right after the canceled Acquire returned", n)
			}
		}
		if st := db.Stats(); st.OpenConnections > 2 {
			t.Fatalf("pool stats %+v", st)
		}
		assertPoolClean(t, db)
	})
}
