package mysql

import (
	"context"
	"database/sql"
	"errors"
	"testing"
	"time"

	"github.com/kannuki-go/kannuki/store"

	"github.com/go-sql-driver/mysql"

	"github.com/kannuki-go/kannuki"
	"github.com/kannuki-go/kannuki/internal/hooktest"
	"github.com/kannuki-go/kannuki/kannukimysql"
)

// openDialedDB opens a pool on dsn whose connections d makes (the
// Config.DialFunc way of registering a Dialer).
func openDialedDB(t testing.TB, dsn string, maxOpen int, d *kannukimysql.Dialer) *sql.DB {
	t.Helper()
	cfg, err := mysql.ParseDSN(dsn)
	if err != nil {
		t.Fatal(err)
	}
	cfg.DialFunc = d.DialNetwork
	c, err := mysql.NewConnector(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return readyDB(t, sql.OpenDB(c), maxOpen)
}

// watchSetup is one way of running a Backend, as far as the watch goes.
type watchSetup struct {
	name    string
	dialer  bool // the pool dials through a Dialer given to the Backend
	noWatch bool // Options.NoWatch
	watched bool // the watch should tell
}

var watchSetups = []watchSetup{
	{name: "dialer", dialer: true, watched: true},
	{name: "nowatch", dialer: true, noWatch: true},
	{name: "nodialer"},
}

// newWatchBackend opens a pool and a Backend set up as w says.
func newWatchBackend(t testing.TB, v variant, w watchSetup, maxOpen int) *kannukimysql.Backend {
	t.Helper()
	opts := kannukimysql.Options{NoWatch: w.noWatch}
	var db *sql.DB
	if w.dialer {
		opts.Dialer = &kannukimysql.Dialer{}
		db = openDialedDB(t, v.dsn(), maxOpen, opts.Dialer)
	} else {
		db = openDB(t, v.dsn(), maxOpen)
	}
	return kannukimysql.New(db, opts)
}

// held is a lock held by WithLock on a goroutine of its own, fn waiting
// for its context to end or for done.
type held struct {
	fctx context.Context
	done chan struct{}
	errc chan error
}

// holdLock takes k through locker and keeps it until h.done is closed.
func holdLock(t *testing.T, locker *kannuki.Locker, k store.Key) *held {
	t.Helper()
	h := &held{done: make(chan struct{}), errc: make(chan error, 1)}
	started := make(chan context.Context, 1)
	go func() {
		h.errc <- locker.WithLock(context.Background(), k.String, func(fctx context.Context) error {
			started <- fctx
			select {
			case <-fctx.Done():
				return context.Cause(fctx)
			case <-h.done:
				return nil
			}
		}, kannuki.Timeout(30*time.Second))
	}()
	select {
	case h.fctx = <-started:
	case err := <-h.errc:
		t.Fatalf("WithLock(%q): %v", k.String, err)
	}
	return h
}

// waitCanceled waits (a generous deadline) for ctx to end and returns its cause.
func waitCanceled(t testing.TB, ctx context.Context, what string) error {
	t.Helper()
	select {
	case <-ctx.Done():
		return context.Cause(ctx)
	case <-time.After(20 * time.Second):
		t.Fatalf("%s: fn's context not canceled within 20 s", what)
		return nil
	}
}

// TestWatchTellsLoss: a session KILLed from another connection while its
// lock is held, with a keepalive that never comes during the test. With
// the Dialer, fn's context is canceled with ErrLockLost (only the watch
// can have told); with NoWatch or without the Dialer, fn runs on with a
// live context while another session takes the key, and only the
// release reports the loss.
func TestWatchTellsLoss(t *testing.T) {
	forEachVariant(t, func(t *testing.T, v variant) {
		for _, w := range watchSetups {
			t.Run(w.name, func(t *testing.T) {
				b := newWatchBackend(t, v, w, 4)
				locker := kannuki.New(b, kannuki.Options{KeepaliveInterval: time.Hour})
				obs := newObserver(t)
				other := kannukimysql.New(openDB(t, v.dsn(), 2), kannukimysql.Options{})
				for i := range 3 { // the same pool: cached sessions, a fresh connection after each kill
					k := uniqueKey(t)
					h := holdLock(t, locker, k)
					id := obs.owner(t, k)
					obs.kill(t, id)
					if w.watched {
						cause := waitCanceled(t, h.fctx, "with the watch")
						if !errors.Is(cause, kannuki.ErrLockLost) {
							t.Fatalf("round %d: cause %v, want ErrLockLost", i, cause)
						}
						if err := <-h.errc; !errors.Is(err, kannuki.ErrLockLost) {
							t.Fatalf("round %d: WithLock: %v, want ErrLockLost", i, err)
						}
						obs.waitFree(t, k)
						continue
					}
					// Another session takes the key: the killed holder is
					// not told.
					ol := mustAcquire(t, other, k)
					if err := h.fctx.Err(); err != nil {
						t.Fatalf("round %d: told (%v, cause %v) without a watch", i, err, context.Cause(h.fctx))
					}
					close(h.done)
					if err := <-h.errc; !errors.Is(err, kannuki.ErrLockLost) {
						t.Fatalf("round %d: WithLock: %v, want ErrLockLost from the release", i, err)
					}
					mustRelease(t, ol)
				}
			})
		}
	})
}

// TestWatchRearms: the watch follows the lock through checks (a check
// disarms and re-arms), a local handoff (Relock: the next lease watches
// the same connection) and many cycles on one pooled connection; a lock
// released normally is never reported lost.
func TestWatchRearms(t *testing.T) {
	b := newWatchBackend(t, variants[0], watchSetups[0], 2)
	obs := newObserver(t)
	k := uniqueKey(t)

	// Checks disarm and re-arm: after three, a KILL is still seen, and
	// nothing but the watch calls the listener here.
	l := mustAcquire(t, b, k)
	r := &hooktest.LossRecorder{}
	l.(store.LossWatcher).WatchLoss(r)
	ctx, cancel := guard()
	defer cancel()
	for range 3 {
		if err := l.(store.Checker).Check(ctx); err != nil {
			t.Fatalf("Check: %v", err)
		}
	}
	obs.kill(t, obs.owner(t, k))
	waitFor(t, "the watch told the listener", func() bool { n, _ := r.Count(); return n > 0 })
	if n, cause := r.Count(); n != 1 || !errors.Is(cause, kannuki.ErrLockLost) {
		t.Fatalf("told %d times, cause %v", n, cause)
	}
	if err := l.Release(ctx); !errors.Is(err, kannuki.ErrLockLost) {
		t.Fatalf("Release: %v, want ErrLockLost", err)
	}

	// Many cycles on the pool's connections, keepalive checks among
	// them: a lock released normally is never reported lost.
	locker := kannuki.New(b, kannuki.Options{KeepaliveInterval: time.Millisecond})
	for range 20 {
		h := holdLock(t, locker, k)
		time.Sleep(3 * time.Millisecond) // room for a check or two
		close(h.done)
		if err := <-h.errc; err != nil {
			t.Fatalf("WithLock: %v", err)
		}
	}
	if s := locker.Stats(); s.Lost != 0 {
		t.Fatalf("%d locks lost", s.Lost)
	}

	// A handoff through the local queue: the second goroutine gets the
	// lock by Relock, on the first one's connection, and is watched.
	locker = kannuki.New(b, kannuki.Options{KeepaliveInterval: time.Hour})
	first := holdLock(t, locker, k)
	second := make(chan *held, 1)
	go func() { second <- holdLock(t, locker, k) }()
	waitFor(t, "the second goroutine queued", func() bool { return locker.Stats().Waiting >= 1 })
	close(first.done)
	if err := <-first.errc; err != nil {
		t.Fatalf("first WithLock: %v", err)
	}
	h := <-second
	if s := locker.Stats(); s.Relocked != 1 {
		t.Logf("Relocked %d (the handoff was not a relock)", s.Relocked)
	}
	obs.kill(t, obs.owner(t, k))
	if cause := waitCanceled(t, h.fctx, "after a handoff"); !errors.Is(cause, kannuki.ErrLockLost) {
		t.Fatalf("cause %v, want ErrLockLost", cause)
	}
	<-h.errc
}

// TestDestroyTells (#14): when the lease destroys its connection because
// the lock is lost or in doubt (here a keepalive check on a KILLed
// session, the watch off), its listener has been told when Check
// returns, once, and never after Release.
func TestDestroyTells(t *testing.T) {
	forEachVariant(t, func(t *testing.T, v variant) {
		b := newWatchBackend(t, v, watchSetups[1], 4)
		obs := newObserver(t)
		k := uniqueKey(t)
		l := mustAcquire(t, b, k)
		r := &hooktest.LossRecorder{}
		l.(store.LossWatcher).WatchLoss(r)
		obs.kill(t, obs.owner(t, k))
		obs.waitFree(t, k)
		ctx, cancel := guard()
		defer cancel()
		err := l.(store.Checker).Check(ctx)
		n, cause := r.Count()
		if !errors.Is(err, kannuki.ErrLockLost) || n != 1 || !errors.Is(cause, kannuki.ErrLockLost) {
			t.Fatalf("Check: %v; listener told %d times (%v) when Check returned, want ErrLockLost and once", err, n, cause)
		}
		if err := l.Release(ctx); !errors.Is(err, kannuki.ErrLockLost) {
			t.Fatalf("Release: %v, want ErrLockLost", err)
		}
		if n, _ := r.Count(); n != 1 {
			t.Fatalf("listener told %d times after Release, want 1", n)
		}

		// A loss known before WatchLoss is told by WatchLoss at once.
		l = mustAcquire(t, b, k)
		obs.kill(t, obs.owner(t, k))
		obs.waitFree(t, k)
		if err := l.(store.Checker).Check(ctx); !errors.Is(err, kannuki.ErrLockLost) {
			t.Fatalf("Check: %v, want ErrLockLost", err)
		}
		r2 := &hooktest.LossRecorder{}
		l.(store.LossWatcher).WatchLoss(r2)
		if n, _ := r2.Count(); n != 1 {
			t.Fatalf("WatchLoss after the loss told %d times, want 1", n)
		}
		if err := l.Release(ctx); !errors.Is(err, kannuki.ErrLockLost) {
			t.Fatalf("Release: %v, want ErrLockLost", err)
		}

		// A lock released normally is never told.
		l = mustAcquire(t, b, k)
		r3 := &hooktest.LossRecorder{}
		l.(store.LossWatcher).WatchLoss(r3)
		if err := l.(store.Checker).Check(ctx); err != nil {
			t.Fatalf("Check while held: %v", err)
		}
		mustRelease(t, l)
		if n, _ := r3.Count(); n != 0 {
			t.Fatalf("released lease told %d times", n)
		}
	})
}

// waitFor polls cond until it holds, failing after 20 s.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 20 s", what)
		}
		time.Sleep(time.Millisecond)
	}
}
