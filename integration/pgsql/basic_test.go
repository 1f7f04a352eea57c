package pgsql

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/kannuki-go/kannuki/keys"
	"github.com/kannuki-go/kannuki/store"

	"github.com/kannuki-go/kannuki"
)

// TestTryAndRelease covers the fast path: one try, Held from a third
// session, Release returning the connection to the pool, release twice,
// release with a canceled context.
func TestTryAndRelease(t *testing.T) {
	forEachDriver(t, func(t *testing.T, d driver) {
		b, db := newBackend(t, d, 4)
		obs := newObserver(t)
		k := uniqueKey(t)

		l := mustAcquire(t, b, k, store.Request{Wait: 0})
		if n := obs.held(t, k); n != 1 {
			t.Fatalf("pg_locks shows %d holders, want 1", n)
		}
		held, err := b.Held(ctxT(t, 10*time.Second), k)
		if err != nil || !held {
			t.Fatalf("Held = %v, %v; want true", held, err)
		}
		if err := l.(store.Checker).Check(ctxT(t, 10*time.Second)); err != nil {
			t.Fatalf("Check on a healthy lease: %v", err)
		}
		// A try on a held lock fails at once with ErrNotAcquired.
		if _, err := b.Acquire(ctxT(t, 10*time.Second), k, store.Request{Wait: 0}); !errors.Is(err, kannuki.ErrNotAcquired) {
			t.Fatalf("try on a held lock: %v, want ErrNotAcquired", err)
		}
		// Release works with a canceled context.
		canceled, cancel := context.WithCancel(context.Background())
		cancel()
		if err := l.Release(canceled); err != nil {
			t.Fatalf("Release with a canceled ctx: %v", err)
		}
		if n := obs.held(t, k); n != 0 {
			t.Fatalf("pg_locks shows %d holders after Release", n)
		}
		if err := l.Release(context.Background()); !errors.Is(err, store.ErrReleased) {
			t.Fatalf("second Release: %v, want ErrReleased", err)
		}
		if err := l.(store.Checker).Check(context.Background()); err == nil {
			t.Fatal("Check after Release succeeded")
		}
		held, err = b.Held(ctxT(t, 10*time.Second), k)
		if err != nil || held {
			t.Fatalf("Held after release = %v, %v; want false", held, err)
		}
		assertPoolClean(t, db)
	})
}

// TestTimeouts: a try returns at once when held; a wait of d returns
// not-acquired no sooner than d; a context deadline or cancel ends a wait
// with the context's error; nothing is left held.
func TestTimeouts(t *testing.T) {
	forEachDriver(t, func(t *testing.T, d driver) {
		b, db := newBackend(t, d, 6)
		obs := newObserver(t)
		k := uniqueKey(t)
		holder := mustAcquire(t, b, k, store.Request{})
		defer mustRelease(t, holder)

		t.Run("try", func(t *testing.T) {
			start := time.Now()
			_, err := b.Acquire(ctxT(t, 10*time.Second), k, store.Request{Wait: 0})
			if !errors.Is(err, kannuki.ErrNotAcquired) {
				t.Fatalf("err = %v, want ErrNotAcquired", err)
			}
			if el := time.Since(start); el > 5*time.Second {
				t.Fatalf("try took %s", el)
			}
		})
		t.Run("wait", func(t *testing.T) {
			const wait = 300 * time.Millisecond
			start := time.Now()
			_, err := b.Acquire(context.Background(), k, store.Request{Wait: wait})
			el := time.Since(start)
			if !errors.Is(err, kannuki.ErrNotAcquired) {
				t.Fatalf("err = %v, want ErrNotAcquired", err)
			}
			if el < wait || el > wait+10*time.Second {
				t.Fatalf("wait of %s returned after %s", wait, el)
			}
		})
		t.Run("deadline", func(t *testing.T) {
			const wait = 300 * time.Millisecond
			ctx, cancel := context.WithTimeout(context.Background(), wait)
			defer cancel()
			start := time.Now()
			_, err := b.Acquire(ctx, k, store.Request{Wait: store.WaitForever})
			el := time.Since(start)
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("err = %v, want context.DeadlineExceeded", err)
			}
			if el < wait || el > wait+10*time.Second {
				t.Fatalf("deadline of %s returned after %s", wait, el)
			}
		})
		t.Run("deadline-before-wait", func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
			defer cancel()
			start := time.Now()
			_, err := b.Acquire(ctx, k, store.Request{Wait: time.Hour})
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("err = %v, want context.DeadlineExceeded", err)
			}
			if el := time.Since(start); el < 200*time.Millisecond || el > 10*time.Second {
				t.Fatalf("returned after %s", el)
			}
		})
		t.Run("cancel", func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			errc := make(chan error, 1)
			go func() {
				_, err := b.Acquire(ctx, k, store.Request{Wait: store.WaitForever})
				errc <- err
			}()
			eventually(t, 10*time.Second, "the waiter to queue", func() bool { return obs.waiting(t, k) == 1 })
			cancel()
			select {
			case err := <-errc:
				if !errors.Is(err, context.Canceled) {
					t.Fatalf("err = %v, want context.Canceled", err)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("canceled waiter did not return within 10s")
			}
			if n := obs.waiting(t, k); n != 0 {
				t.Fatalf("%d sessions still wait after the cancel", n)
			}
		})
		t.Run("canceled-before", func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			if _, err := b.Acquire(ctx, k, store.Request{Wait: store.WaitForever}); !errors.Is(err, context.Canceled) {
				t.Fatalf("err = %v, want context.Canceled", err)
			}
		})
		if n := obs.held(t, k); n != 1 {
			t.Fatalf("%d holders, want only the original one", n)
		}
		assertPoolClean(t, db, holder)
	})
}

// TestOneStatementWhileWaiting: while a waiter waits 3 s the server runs one
// statement for it (its query_start never changes), carrying the key in a
// comment, not a poll loop.
func TestOneStatementWhileWaiting(t *testing.T) {
	forEachDriver(t, func(t *testing.T, d driver) {
		b, _ := newBackend(t, d, 4)
		obs := newObserver(t)
		k := uniqueKey(t, `it's a "key" */ -- with junk`)
		holder := mustAcquire(t, b, k, store.Request{})
		defer mustRelease(t, holder)

		const wait = 3 * time.Second
		errc := make(chan error, 1)
		start := time.Now()
		go func() {
			_, err := b.Acquire(ctxT(t, 30*time.Second), k, store.Request{Wait: wait})
			errc <- err
		}()
		var pid int64
		eventually(t, 10*time.Second, "the waiter to queue", func() bool {
			return obs.db.QueryRow("SELECT pid FROM pg_locks WHERE "+where(k)+" AND NOT granted").Scan(&pid) == nil
		})
		type snap struct {
			queryStart time.Time
			state      string
			waitEvent  string
			query      string
		}
		look := func() snap {
			var s snap
			err := obs.db.QueryRow(`SELECT query_start, state, COALESCE(wait_event_type, ''), query
				FROM pg_stat_activity WHERE pid = $1`, pid).Scan(&s.queryStart, &s.state, &s.waitEvent, &s.query)
			if err != nil {
				t.Fatalf("pg_stat_activity for pid %d: %v", pid, err)
			}
			return s
		}
		first := look()
		var last snap
		for time.Since(start) < wait-300*time.Millisecond {
			last = look()
			if !last.queryStart.Equal(first.queryStart) {
				t.Fatalf("waiter's query_start moved from %s to %s: it polls", first.queryStart, last.queryStart)
			}
			if last.state != "active" || last.waitEvent != "Lock" {
				t.Fatalf("waiter state %q wait_event_type %q, want active/Lock", last.state, last.waitEvent)
			}
			time.Sleep(100 * time.Millisecond)
		}
		if got, want := kannukiName(last.query), commentName(k); got != want {
			t.Fatalf("waiting statement %q carries key %q, want %q", last.query, got, want)
		}
		t.Logf("waiting statement: %s", last.query)
		if err := <-errc; !errors.Is(err, kannuki.ErrNotAcquired) {
			t.Fatalf("err = %v, want ErrNotAcquired", err)
		}
		if el := time.Since(start); el < wait {
			t.Fatalf("returned after %s, before the wait of %s", el, wait)
		}
	})
}

// TestHandoff: a blocked waiter gets the lock as soon as the holder
// releases.
func TestHandoff(t *testing.T) {
	forEachDriver(t, func(t *testing.T, d driver) {
		b, db := newBackend(t, d, 4)
		obs := newObserver(t)
		k := uniqueKey(t)
		for _, mode := range []store.Mode{store.ModeExclusive, store.ModeShared} {
			holder := mustAcquire(t, b, k, store.Request{Mode: store.ModeExclusive})
			got := make(chan store.Lease, 1)
			errc := make(chan error, 1)
			go func() {
				l, err := b.Acquire(ctxT(t, 30*time.Second), k, store.Request{Mode: mode, Wait: store.WaitForever})
				if err != nil {
					errc <- err
					return
				}
				got <- l
			}()
			eventually(t, 10*time.Second, "the waiter to queue", func() bool { return obs.waiting(t, k) == 1 })
			released := time.Now()
			mustRelease(t, holder)
			select {
			case l := <-got:
				t.Logf("%s waiter granted %s after the release began", mode, time.Since(released))
				if n := obs.held(t, k); n != 1 {
					t.Fatalf("%d holders after handoff", n)
				}
				mustRelease(t, l)
			case err := <-errc:
				t.Fatal(err)
			case <-time.After(10 * time.Second):
				t.Fatal("waiter not granted within 10s of the release")
			}
		}
		if n := obs.held(t, k); n != 0 {
			t.Fatalf("%d holders at the end", n)
		}
		assertPoolClean(t, db)
	})
}

// TestShared: many readers at once, writers excluded while they read, the
// shared unlock used (a Release of a shared lock with the exclusive unlock
// would report the lock lost), nothing left behind.
func TestShared(t *testing.T) {
	forEachDriver(t, func(t *testing.T, d driver) {
		b, db := newBackend(t, d, 12)
		obs := newObserver(t)
		for _, scheme := range []keys.Scheme{keys.Ruby{}, keys.Advisory{Namespace: 7}} {
			base := uniqueKey(t)
			k, err := scheme.Derive("", base.String)
			if err != nil {
				t.Fatal(err)
			}
			const readers = 8
			var leases []store.Lease
			for range readers {
				leases = append(leases, mustAcquire(t, b, k, store.Request{Mode: store.ModeShared}))
			}
			if n := obs.held(t, k); n != readers {
				t.Fatalf("%d shared holders, want %d", n, readers)
			}
			if _, err := b.Acquire(ctxT(t, 10*time.Second), k, store.Request{Mode: store.ModeExclusive}); !errors.Is(err, kannuki.ErrNotAcquired) {
				t.Fatalf("writer try among readers: %v, want ErrNotAcquired", err)
			}
			writer := make(chan store.Lease, 1)
			go func() {
				l, err := b.Acquire(ctxT(t, 30*time.Second), k, store.Request{Mode: store.ModeExclusive, Wait: store.WaitForever})
				if err != nil {
					t.Error(err)
				}
				writer <- l
			}()
			eventually(t, 10*time.Second, "the writer to queue", func() bool { return obs.waiting(t, k) == 1 })
			for i, l := range leases {
				select {
				case <-writer:
					t.Fatalf("writer granted while %d readers still hold", readers-i)
				default:
				}
				if err := l.Release(context.Background()); err != nil {
					t.Fatalf("Release of a shared lock: %v", err)
				}
			}
			var w store.Lease
			select {
			case w = <-writer:
			case <-time.After(10 * time.Second):
				t.Fatal("writer not granted within 10s of the last reader's release")
			}
			if w == nil {
				t.FailNow()
			}
			if _, err := b.Acquire(ctxT(t, 10*time.Second), k, store.Request{Mode: store.ModeShared}); !errors.Is(err, kannuki.ErrNotAcquired) {
				t.Fatalf("reader try while a writer holds: %v, want ErrNotAcquired", err)
			}
			mustRelease(t, w)
			if n := obs.held(t, k); n != 0 {
				t.Fatalf("%d holders left", n)
			}
		}
		assertPoolClean(t, db)
	})
}

// TestMyLockIDs: a lock on "my_lock" shows in pg_locks as classid
// 2113435373 / objid 2183269011 (KEYS.md, shared with the Ruby gem).
func TestMyLockIDs(t *testing.T) {
	forEachDriver(t, func(t *testing.T, d driver) {
		b, _ := newBackend(t, d, 2)
		obs := newObserver(t)
		k, err := keys.Ruby{}.Derive("", "my_lock")
		if err != nil {
			t.Fatal(err)
		}
		// Other suites may hold my_lock too: wait for it.
		l := mustAcquire(t, b, k, store.Request{Wait: store.WaitForever})
		defer mustRelease(t, l)
		var n int
		err = obs.db.QueryRow(`SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'
			AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
			AND classid = 2113435373 AND objid = 2183269011 AND objsubid = 1 AND granted AND mode = 'ExclusiveLock'`).Scan(&n)
		if err != nil || n != 1 {
			t.Fatalf("pg_locks rows for my_lock = %d, %v; want 1", n, err)
		}
	})
}

// TestPairKeys: the two-int4 form (with_advisory_lock-compatible keys).
func TestPairKeys(t *testing.T) {
	forEachDriver(t, func(t *testing.T, d driver) {
		b, db := newBackend(t, d, 4)
		obs := newObserver(t)
		k, err := keys.Advisory{Namespace: 3}.Derive("", uniqueKey(t).String)
		if err != nil {
			t.Fatal(err)
		}
		l := mustAcquire(t, b, k, store.Request{})
		if n := obs.held(t, k); n != 1 {
			t.Fatalf("%d holders", n)
		}
		if _, err := b.Acquire(ctxT(t, 10*time.Second), k, store.Request{Wait: 50 * time.Millisecond}); !errors.Is(err, kannuki.ErrNotAcquired) {
			t.Fatalf("wait on a held pair lock: %v", err)
		}
		held, err := b.Held(ctxT(t, 10*time.Second), k)
		if err != nil || !held {
			t.Fatalf("Held = %v, %v", held, err)
		}
		// Relock's pair form: taken again on the same session.
		l, err = l.(store.Relocker).Relock(ctxT(t, 10*time.Second))
		if err != nil || l == nil {
			t.Fatalf("Relock = %v, %v; want a new lease", l, err)
		}
		if n := obs.held(t, k); n != 1 {
			t.Fatalf("%d holders after Relock", n)
		}
		mustRelease(t, l)
		if n := obs.held(t, k); n != 0 {
			t.Fatalf("%d holders after release", n)
		}
		assertPoolClean(t, db)
	})
}
