package pgsql

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"os"
	"runtime"
	"slices"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/kannuki-go/kannuki/store"

	"github.com/lib/pq"

	"github.com/kannuki-go/kannuki"
	"github.com/kannuki-go/kannuki/internal/hooktest"
	"github.com/kannuki-go/kannuki/internal/testdb"
	"github.com/kannuki-go/kannuki/kannukipg"
)

// watchGuard bounds a wait for news of a loss: a hang guard, never a
// timing assertion.
const watchGuard = 20 * time.Second

// watched is a Backend whose held locks' sockets can be watched: pgx/stdlib
// as is, lib/pq through a kannukipg.Dialer.
func watched(t testing.TB, d driver, opts kannukipg.Options) *kannukipg.Backend {
	t.Helper()
	return watchedPool(t, d, 8, opts)
}

// watchedPool is watched with a pool of n connections.
func watchedPool(t testing.TB, d driver, n int, opts kannukipg.Options) *kannukipg.Backend {
	t.Helper()
	if d.sql == "pgx" {
		return kannukipg.New(openDB(t, d, n), opts)
	}
	c, err := pq.NewConnector(testdb.PostgresDSN())
	if err != nil {
		t.Fatal(err)
	}
	dialer := &kannukipg.Dialer{}
	c.Dialer(dialer)
	db := sql.OpenDB(c)
	db.SetMaxOpenConns(n)
	db.SetMaxIdleConns(n)
	t.Cleanup(func() { db.Close() })
	if err := db.PingContext(ctxT(t, 10*time.Second)); err != nil {
		testdb.Unavailable(t, "PostgreSQL", err)
	}
	opts.Dialer = dialer
	return kannukipg.New(db, opts)
}

// holding runs WithLock on name in a goroutine whose fn waits for its
// context to end, or for give to be closed. entered is closed once fn runs;
// cause is fn's context's cause (nil when it returned by give); result is
// WithLock's error.
type holding struct {
	entered, give chan struct{}
	canceled      time.Time
	cause         error
	result        chan error
}

func hold(t *testing.T, lk *kannuki.Locker, name string) *holding {
	t.Helper()
	h := &holding{entered: make(chan struct{}), give: make(chan struct{}), result: make(chan error, 1)}
	go func() {
		h.result <- lk.WithLock(context.Background(), name, func(ctx context.Context) error {
			close(h.entered)
			select {
			case <-ctx.Done():
				h.canceled, h.cause = time.Now(), context.Cause(ctx)
				return ctx.Err()
			case <-h.give:
				return nil
			}
		})
	}()
	select {
	case <-h.entered:
	case err := <-h.result:
		t.Fatalf("WithLock(%q): %v", name, err)
	}
	return h
}

// lockedKey is the full key of name on lk.
func lockedKey(t testing.TB, lk *kannuki.Locker, name string) store.Key {
	t.Helper()
	k, err := lk.Key(name)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// TestSocketWatch: with the keepalive off, only the socket watch can tell
// a holder that its session was terminated: fn's context is canceled with
// ErrLockLost, and WithLock returns it. A lock taken again by a relock is
// watched too. With NoWatch the holder is not told until its release.
func TestSocketWatch(t *testing.T) {
	forEachDriver(t, func(t *testing.T, d driver) {
		obs := newObserver(t)
		t.Run("watch", func(t *testing.T) {
			lk := kannuki.New(watched(t, d, kannukipg.Options{}), kannuki.Options{KeepaliveInterval: -1})
			name := uniqueKey(t).String
			h := hold(t, lk, name)
			obs.terminate(t, lockedKey(t, lk, name))
			select {
			case err := <-h.result:
				if !errors.Is(err, kannuki.ErrLockLost) || !errors.Is(h.cause, kannuki.ErrLockLost) {
					t.Fatalf("WithLock: %v, fn's context's cause %v; want ErrLockLost", err, h.cause)
				}
			case <-time.After(watchGuard):
				t.Fatalf("the holder was not told within %s of pg_terminate_backend", watchGuard)
			}
			if s := lk.Stats(); s.Lost != 1 {
				t.Fatalf("Stats.Lost = %d, want 1", s.Lost)
			}
		})
		t.Run("relocked", func(t *testing.T) {
			b := watched(t, d, kannukipg.Options{})
			k := uniqueKey(t)
			l := mustAcquire(t, b, k, store.Request{})
			next, err := l.(store.Relocker).Relock(ctxT(t, watchGuard))
			if err != nil || next == nil {
				t.Fatalf("Relock: %v, %v; want the lock again", next, err)
			}
			var rec hooktest.LossRecorder
			next.(store.LossWatcher).WatchLoss(&rec)
			obs.terminate(t, k)
			eventually(t, watchGuard, "the relocked lease to be told", func() bool { return len(rec.Told()) == 1 })
			if err := next.Release(context.Background()); !errors.Is(err, kannuki.ErrLockLost) {
				t.Fatalf("Release: %v; want ErrLockLost", err)
			}
		})
		t.Run("nowatch", func(t *testing.T) {
			lk := kannuki.New(watched(t, d, kannukipg.Options{NoWatch: true}), kannuki.Options{KeepaliveInterval: -1})
			name := uniqueKey(t).String
			h := hold(t, lk, name)
			obs.terminate(t, lockedKey(t, lk, name)) // returns once the session has ended
			select {
			case err := <-h.result:
				t.Fatalf("told without a watch: %v", err)
			case <-time.After(200 * time.Millisecond):
			}
			close(h.give)
			if err := <-h.result; !errors.Is(err, kannuki.ErrLockLost) {
				t.Fatalf("WithLock: %v; want ErrLockLost from the release", err)
			}
		})
	})
}

// TestDestroyTellsListener: when the Backend destroys the connection of a
// held lock, the lease's listener has been told by the time the call that
// destroyed it returns: a keepalive that found the session terminated
// (the watch off, so that the keepalive is the one to find it), an unlock
// the socket watchdog cut short (pgx/stdlib). A loss found before
// WatchLoss is told at once by WatchLoss, and nothing is told twice.
func TestDestroyTellsListener(t *testing.T) {
	forEachDriver(t, func(t *testing.T, d driver) {
		obs := newObserver(t)
		b := watched(t, d, kannukipg.Options{NoWatch: true})
		ctx := ctxT(t, time.Minute)

		k := uniqueKey(t, "keepalive")
		l := mustAcquire(t, b, k, store.Request{})
		var rec hooktest.LossRecorder
		l.(store.LossWatcher).WatchLoss(&rec)
		obs.terminate(t, k)
		err := l.(store.Checker).Check(ctx)
		told := rec.Told()
		if !errors.Is(err, kannuki.ErrLockLost) || len(told) != 1 || !errors.Is(told[0], kannuki.ErrLockLost) {
			t.Fatalf("Check: %v; told %v; want ErrLockLost, told once before Check returned", err, told)
		}
		if err := l.Release(ctx); !errors.Is(err, kannuki.ErrLockLost) {
			t.Fatalf("Release: %v; want ErrLockLost", err)
		}
		if told := rec.Told(); len(told) != 1 {
			t.Fatalf("told %d times", len(told))
		}

		k = uniqueKey(t, "before")
		l = mustAcquire(t, b, k, store.Request{})
		obs.terminate(t, k)
		if err := l.(store.Checker).Check(ctx); !errors.Is(err, kannuki.ErrLockLost) {
			t.Fatalf("Check: %v; want ErrLockLost", err)
		}
		var late hooktest.LossRecorder
		l.(store.LossWatcher).WatchLoss(&late)
		if told := late.Told(); len(told) != 1 {
			t.Fatalf("WatchLoss after the loss: told %v, want told at once", told)
		}
		_ = l.Release(ctx)
	})
	t.Run("unlock-watchdog", func(t *testing.T) {
		obs := newObserver(t)
		p := newStallProxy(t)
		db, err := sql.Open("pgx", p.dsn(t))
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		if err := db.PingContext(ctxT(t, 10*time.Second)); err != nil {
			testdb.Unavailable(t, "PostgreSQL through the test proxy", err)
		}
		b := kannukipg.New(db, kannukipg.Options{ReleaseTimeout: 300 * time.Millisecond})
		k := uniqueKey(t)
		l := mustAcquire(t, b, k, store.Request{})
		var rec hooktest.LossRecorder
		l.(store.LossWatcher).WatchLoss(&rec)
		p.stall()
		err = l.Release(context.Background())
		told := rec.Told()
		if err == nil || len(told) != 1 {
			t.Fatalf("Release through a stalled connection: %v; told %v; want an error, told once before Release returned", err, told)
		}
		p.unstall()
		waitFreed(t, obs, k)
	})
}

// TestWatchLatency measures the time from pg_terminate_backend to the
// holder's context cancel, with the watch and without it (keepalive every
// 100 ms), on pgx/stdlib:
//
//	KANNUKI_PG_WATCH_LATENCY=100 go test -run TestWatchLatency -v ./pgsql
func TestWatchLatency(t *testing.T) {
	kills, _ := strconv.Atoi(os.Getenv("KANNUKI_PG_WATCH_LATENCY"))
	if kills <= 0 {
		t.Skip("set KANNUKI_PG_WATCH_LATENCY=<kills> to measure")
	}
	obs := newObserver(t)
	for _, noWatch := range []bool{false, true} {
		lk := kannuki.New(watched(t, drivers[0], kannukipg.Options{NoWatch: noWatch}), kannuki.Options{KeepaliveInterval: 100 * time.Millisecond})
		var lat []time.Duration
		for range kills {
			name := uniqueKey(t).String
			h := hold(t, lk, name)
			pids := obs.holderPIDs(t, lockedKey(t, lk, name))
			if len(pids) != 1 {
				t.Fatalf("holders %v", pids)
			}
			start := time.Now()
			if _, err := obs.db.Exec("SELECT pg_terminate_backend($1)", pids[0]); err != nil {
				t.Fatal(err)
			}
			select {
			case err := <-h.result:
				if !errors.Is(err, kannuki.ErrLockLost) {
					t.Fatalf("WithLock: %v", err)
				}
			case <-time.After(watchGuard):
				t.Fatal("not told")
			}
			lat = append(lat, h.canceled.Sub(start))
		}
		slices.Sort(lat)
		q := func(f float64) time.Duration { return lat[min(len(lat)-1, int(f*float64(len(lat))))] }
		t.Logf("NoWatch=%v, %d kills: min %s  median %s  p99 %s  max %s", noWatch, len(lat),
			lat[0].Round(time.Microsecond), q(0.5).Round(time.Microsecond), q(0.99).Round(time.Microsecond), lat[len(lat)-1].Round(time.Microsecond))
	}
}

// TestWatchCost compares the uncontended Acquire+Release cycle with the
// watch and without it (Options.NoWatch), on one pool, rounds of 200 cycles
// interleaved so that the machine's load hits both alike, medians of 40
// rounds:
//
//	KANNUKI_PG_WATCH_COST=1 go test -run TestWatchCost -v ./pgsql
func TestWatchCost(t *testing.T) {
	if os.Getenv("KANNUKI_PG_WATCH_COST") == "" {
		t.Skip("set KANNUKI_PG_WATCH_COST=1 to measure")
	}
	forEachDriverSerial(t, func(t *testing.T, d driver) {
		var db *sql.DB
		var on, off *kannukipg.Backend
		if d.sql == "pgx" {
			db = openDB(t, d, 4)
			on, off = kannukipg.New(db, kannukipg.Options{}), kannukipg.New(db, kannukipg.Options{NoWatch: true})
		} else {
			on = watched(t, d, kannukipg.Options{})
			off = watched(t, d, kannukipg.Options{NoWatch: true}) // the same Dialer's wrapping, unwatched
		}
		k := uniqueKey(t)
		ctx := context.Background()
		var cpu [2]time.Duration // the process's CPU time in rounds with the watch, without
		round := func(b *kannukipg.Backend) time.Duration {
			c0 := cpuTime()
			defer func() {
				cpu[b2i(b == off)] += cpuTime() - c0
			}()
			start := time.Now()
			for range 200 {
				l, err := b.Acquire(ctx, k, store.Request{})
				if err != nil {
					t.Fatal(err)
				}
				if err := l.Release(ctx); err != nil {
					t.Fatal(err)
				}
			}
			return time.Since(start)
		}
		round(on)
		round(off)
		cpu = [2]time.Duration{}
		var ton, toff []time.Duration
		for i := range 40 {
			if i%2 == 0 {
				ton, toff = append(ton, round(on)), append(toff, round(off))
			} else {
				toff, ton = append(toff, round(off)), append(ton, round(on))
			}
		}
		mon, moff := median(ton), median(toff)
		t.Logf("median round of 200 cycles: watch %s, NoWatch %s: watch/NoWatch %.3f; client CPU per cycle: watch %s, NoWatch %s",
			mon, moff, float64(mon)/float64(moff), cpu[0]/(40*200), cpu[1]/(40*200))
	})
}

// cpuTime is the CPU time the process has used, user and system.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// TestWatchNoGoroutinePerLock: 40 held and watched locks add no goroutine
// per lock (one for the Backend's Poller), and once they are released the
// Poller's goroutine ends too.
func TestWatchNoGoroutinePerLock(t *testing.T) {
	forEachDriverSerial(t, func(t *testing.T, d driver) {
		const n = 40
		b := watchedPool(t, d, n, kannukipg.Options{})
		lk := kannuki.New(b, kannuki.Options{KeepaliveInterval: -1})
		ctx := ctxT(t, time.Minute)
		var held []*kannuki.Handle
		t.Cleanup(func() {
			for _, h := range held {
				_ = h.Release(context.Background())
			}
		})
		// One lock first, so that the pool's and the drivers' goroutines
		// exist before counting.
		h, err := lk.Acquire(ctx, uniqueKey(t).String, kannuki.Timeout(0))
		if err != nil {
			t.Fatal(err)
		}
		if err := h.Release(ctx); err != nil {
			t.Fatal(err)
		}
		eventually(t, watchGuard, "the Poller's goroutine to end", func() bool { return !pollerRunning() })
		before := runtime.NumGoroutine()
		for range n {
			h, err := lk.Acquire(ctx, uniqueKey(t).String, kannuki.Timeout(0))
			if err != nil {
				t.Fatal(err)
			}
			held = append(held, h)
		}
		eventually(t, watchGuard, "the Poller's goroutine to start", pollerRunning)
		if g := runtime.NumGoroutine() - before; g > 2 {
			t.Fatalf("%d more goroutines with %d watched locks held", g, n)
		}
		for _, h := range held {
			if err := h.Release(ctx); err != nil {
				t.Fatal(err)
			}
		}
		held = nil
		eventually(t, watchGuard, "the Poller's goroutine to end", func() bool { return !pollerRunning() })
	})
}

// pollerRunning reports whether a sockwatch Poller's goroutine runs.
func pollerRunning() bool {
	buf := make([]byte, 1<<20)
	return bytes.Contains(buf[:runtime.Stack(buf, true)], []byte("sockwatch.(*Poller).loop"))
}
