package mysql

import (
	"context"
	"errors"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kannuki-go/kannuki/store"

	"github.com/kannuki-go/kannuki"
	"github.com/kannuki-go/kannuki/kannukimysql"
)

// TestExclusion: 16 goroutines on 4 clients (pools of their own, so the
// server does the excluding) take one key, mixing waits forever, bounded
// waits and tries. Inside the lock a goroutine marks itself the holder,
// bumps a row of a table outside any transaction with a read-then-write
// that loses updates when two holders overlap, and unmarks itself; the
// mark and the row both must show a single holder at a time.
func TestExclusion(t *testing.T) {
	forEachVariant(t, func(t *testing.T, v variant) {
		const clients, goroutines = 4, 16
		cycles := 500
		if testing.Short() {
			cycles = 200
		}
		backends := make([]*kannukimysql.Backend, clients)
		for i := range backends {
			backends[i], _ = newBackend(t, v, goroutines/clients+1, kannukimysql.Options{})
		}
		db := openDB(t, v.dsn(), 4)
		table := "kannuki_it_excl_" + randSuffix()
		ctx, cancel := guard()
		defer cancel()
		if _, err := db.ExecContext(ctx, "CREATE TABLE "+table+" (id INT PRIMARY KEY, n INT NOT NULL) ENGINE=InnoDB"); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _, _ = db.Exec("DROP TABLE IF EXISTS " + table) })
		if _, err := db.ExecContext(ctx, "INSERT INTO "+table+" VALUES (1, 0)"); err != nil {
			t.Fatal(err)
		}
		k := uniqueKey(t)

		var (
			inside, overlaps atomic.Int32
			done, refused    atomic.Int64
			wg               sync.WaitGroup
		)
		for g := range goroutines {
			wg.Add(1)
			go func() {
				defer wg.Done()
				b := backends[g%clients]
				for done.Load() < int64(cycles) && !t.Failed() {
					var wait time.Duration
					switch rand.IntN(3) {
					case 0:
						wait = store.WaitForever
					case 1:
						wait = time.Duration(rand.IntN(20)) * time.Millisecond
					}
					ctx, cancel := guard()
					l, err := b.Acquire(ctx, k, exclusive(wait))
					if errors.Is(err, kannuki.ErrNotAcquired) {
						cancel()
						refused.Add(1)
						continue
					}
					if err != nil {
						cancel()
						t.Errorf("Acquire: %v", err)
						return
					}
					if inside.Add(1) != 1 {
						overlaps.Add(1)
					}
					var n int
					if err := db.QueryRowContext(ctx, "SELECT n FROM "+table+" WHERE id = 1").Scan(&n); err != nil {
						t.Errorf("read: %v", err)
					}
					if _, err := db.ExecContext(ctx, "UPDATE "+table+" SET n = ? WHERE id = 1", n+1); err != nil {
						t.Errorf("write: %v", err)
					}
					inside.Add(-1)
					done.Add(1)
					if err := l.Release(ctx); err != nil {
						t.Errorf("Release: %v", err)
					}
					cancel()
				}
			}()
		}
		wg.Wait()
		var n int
		if err := db.QueryRowContext(ctx, "SELECT n FROM "+table+" WHERE id = 1").Scan(&n); err != nil {
			t.Fatal(err)
		}
		if o := overlaps.Load(); o != 0 {
			t.Fatalf("%d overlapping holders", o)
		}
		if int64(n) != done.Load() {
			t.Fatalf("counter %d after %d cycles: lost updates, two holders overlapped", n, done.Load())
		}
		t.Logf("%d cycles, %d refused tries or timeouts", n, refused.Load())
		if o := newObserver(t).owner(t, k); o != 0 {
			t.Fatalf("held by %d at the end", o)
		}
	})
}

// TestSmallPools: with a pool of one connection, a held lock blocks every
// other Acquire of the process (a try at once, a wait after its own
// budget: ErrNoConnection and ErrNotAcquired; or the context's error), and a canceled wait still ends its server session
// through the room its destroyed connection leaves. With two, one lock is
// held and one wait runs, and canceling the wait works the same. Nothing
// hangs and nothing stays held.
func TestSmallPools(t *testing.T) {
	v := variants[0]
	opts := kannukimysql.Options{ConnWait: 100 * time.Millisecond}
	other, _ := newBackend(t, v, 2, kannukimysql.Options{})
	obs := newObserver(t)

	// cancelWait starts a wait forever on k (held by someone else) with b,
	// cancels it once the server shows it waiting, and checks that the
	// waiting session is gone and the lock still the holder's.
	cancelWait := func(t *testing.T, b store.Backend, k store.Key) {
		t.Helper()
		holderID := obs.owner(t, k)
		ctx, cancel := context.WithCancel(context.Background())
		got := make(chan error, 1)
		go func() {
			_, err := b.Acquire(ctx, k, exclusive(store.WaitForever))
			got <- err
		}()
		obs.waitWaiters(t, k, 1)
		cancel()
		if err := <-got; !errors.Is(err, context.Canceled) {
			t.Fatalf("canceled wait: %v, want context.Canceled", err)
		}
		if ws := obs.waiters(t, k); len(ws) != 0 {
			t.Fatalf("a session still waits after the cancel: %+v", ws)
		}
		if o := obs.owner(t, k); o != holderID {
			t.Fatalf("owner %d, want the holder %d", o, holderID)
		}
	}

	t.Run("pool1", func(t *testing.T) {
		b, _ := newBackend(t, v, 1, opts)
		k1, k2 := uniqueKey(t, "1"), uniqueKey(t, "2")
		l := mustAcquire(t, b, k1)
		ctx, cancel := guard()
		defer cancel()
		if _, err := b.Acquire(ctx, k2, exclusive(0)); !errors.Is(err, kannukimysql.ErrNoConnection) || !errors.Is(err, kannuki.ErrNotAcquired) ||
			!strings.Contains(err.Error(), "all 1 connections in use") {
			t.Fatalf("try with the only connection pinned: %v, want ErrNoConnection at once", err)
		}
		if _, err := b.Acquire(ctx, k2, exclusive(300*time.Millisecond)); !errors.Is(err, kannukimysql.ErrNoConnection) ||
			!strings.Contains(err.Error(), "within 300ms") {
			t.Fatalf("timed wait with the only connection pinned: %v, want ErrNoConnection within its budget", err)
		}
		short, cancelShort := context.WithTimeout(context.Background(), 200*time.Millisecond)
		_, err := b.Acquire(short, k2, exclusive(store.WaitForever))
		cancelShort()
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("wait with the only connection pinned: %v, want DeadlineExceeded", err)
		}
		mustRelease(t, l)

		ol := mustAcquire(t, other, k1)
		cancelWait(t, b, k1)
		mustRelease(t, ol)
		mustRelease(t, mustAcquire(t, b, k1)) // the pool works after all that
		obs.waitFree(t, k1)
	})

	t.Run("pool2", func(t *testing.T) {
		b, _ := newBackend(t, v, 2, opts)
		k1, k2, k3 := uniqueKey(t, "1"), uniqueKey(t, "2"), uniqueKey(t, "3")
		l := mustAcquire(t, b, k1)
		ol := mustAcquire(t, other, k2)
		cancelWait(t, b, k2)

		// One held, one waiting: a third Acquire finds no connection.
		ctx, cancel := context.WithCancel(context.Background())
		got := make(chan error, 1)
		go func() {
			_, err := b.Acquire(ctx, k2, exclusive(store.WaitForever))
			got <- err
		}()
		obs.waitWaiters(t, k2, 1)
		gctx, gcancel := guard()
		if _, err := b.Acquire(gctx, k3, exclusive(0)); !errors.Is(err, kannukimysql.ErrNoConnection) {
			t.Fatalf("third Acquire on a pool of 2: %v, want ErrNoConnection", err)
		}
		gcancel()
		cancel()
		if err := <-got; !errors.Is(err, context.Canceled) {
			t.Fatalf("canceled wait: %v", err)
		}
		mustRelease(t, ol)
		mustRelease(t, l)
		for _, k := range []store.Key{k1, k2, k3} {
			obs.waitFree(t, k)
		}
	})
}
