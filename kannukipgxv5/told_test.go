package kannukipgxv5

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/kannuki-go/kannuki/store"

	"github.com/kannuki-go/kannuki"
	"github.com/kannuki-go/kannuki/internal/hooktest"
)

// expectTold fails unless r was told exactly once.
func expectTold(t *testing.T, what string, r *hooktest.LossRecorder) {
	t.Helper()
	if n, cause := r.Count(); n != 1 || cause == nil {
		t.Fatalf("%s: told %d times (%v), want once", what, n, cause)
	}
}

// watchLoss hands l a recorder.
func watchLoss(l store.Lease) *hooktest.LossRecorder {
	r := new(hooktest.LossRecorder)
	l.(store.LossWatcher).WatchLoss(r)
	return r
}

// onlyShared is the one shared connection of b.
func onlyShared(t *testing.T, b *Backend) *sharedConn {
	t.Helper()
	b.mux.mu.Lock()
	defer b.mux.mu.Unlock()
	if len(b.mux.conns) != 1 {
		t.Fatalf("%d shared connections, want 1", len(b.mux.conns))
	}
	return b.mux.conns[0]
}

// TestMuxKillTellsEveryLease: when the backend destroys a shared
// connection (kill), every lease on it is told before kill returns:
// 1,200 Handles and 8 WithLock calls on one shared connection all report
// the loss right after the kill, with no waiting: Err matches
// ErrLockLost, Lost is closed, fn's context is canceled with
// ErrLockLost. The keepalive (an hour) cannot have told them.
func TestMuxKillTellsEveryLease(t *testing.T) {
	const handles, calls = 1200, 8
	pool := newPool(t, 4)
	be := New(pool, Options{SharedConns: 1})
	l := kannuki.New(be, kannuki.Options{KeyPrefix: "kannukipgxv5-test-" + randHex(), KeepaliveInterval: time.Hour})
	obs := newObserver(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute) // a hang guard only
	defer cancel()
	hs := make([]*kannuki.Handle, handles)
	for i := range hs {
		h, err := l.Acquire(ctx, fmt.Sprint("k", i))
		if err != nil {
			t.Fatal(err)
		}
		defer h.Release(context.Background())
		hs[i] = h
	}
	fctxs := make(chan context.Context, calls)
	var wg sync.WaitGroup
	results := make([]error, calls)
	for i := range calls {
		wg.Go(func() {
			results[i] = l.WithLock(ctx, fmt.Sprint("fn", i), func(fctx context.Context) error {
				fctxs <- fctx
				<-fctx.Done()
				return fctx.Err()
			})
		})
	}
	var running []context.Context
	for range calls {
		running = append(running, <-fctxs)
	}
	c := onlyShared(t, be)
	if err := c.enter(ctx); err != nil {
		t.Fatal(err)
	}
	c.kill(errors.New("killed on purpose by the test"))
	c.leave()
	// Right after the kill: no waiting.
	for i, h := range hs {
		if err := h.Err(); !errors.Is(err, store.ErrLockLost) {
			t.Fatalf("handle %d: Err = %v right after the kill, want ErrLockLost", i, err)
		}
		select {
		case <-h.Lost():
		default:
			t.Fatalf("handle %d: Lost not closed right after the kill", i)
		}
	}
	for i, fctx := range running {
		if cause := context.Cause(fctx); !errors.Is(cause, store.ErrLockLost) {
			t.Fatalf("WithLock %d: fn's context cause = %v right after the kill, want ErrLockLost", i, cause)
		}
	}
	wg.Wait()
	for i, err := range results {
		if !errors.Is(err, store.ErrLockLost) {
			t.Errorf("WithLock %d = %v, want ErrLockLost", i, err)
		}
	}
	for i, h := range hs {
		if err := h.Release(ctx); !errors.Is(err, store.ErrLockLost) {
			t.Fatalf("handle %d: Release = %v, want ErrLockLost", i, err)
		}
	}
	obs.sessionGone(c.pid)
	if st := l.Stats(); st.Lost < handles+calls {
		t.Errorf("Stats.Lost = %d, want %d", st.Lost, handles+calls)
	}
	poolHoldsNone(t, pool)
}

// TestMuxDestroyTells: a statement of one lease that makes the backend
// destroy a shared connection (an unlock that returns false, a relock
// that finds the lock gone, a failed keepalive) tells the other leases on
// it before that call returns, and never tells a lease after its Release.
func TestMuxDestroyTells(t *testing.T) {
	ctx, cancel := guardCtx()
	defer cancel()
	t.Run("unlock false", func(t *testing.T) {
		p := newSharedPair(t, shared(0))
		r1, r2 := watchLoss(p.l1), watchLoss(p.l2)
		unlockAllBehindBack(t, ctx, p.l1.(*muxLease).c)
		if err := p.l1.Release(ctx); !errors.Is(err, store.ErrLockLost) {
			t.Fatalf("Release = %v, want ErrLockLost", err)
		}
		expectTold(t, "the other lease, when the Release returned", r2)
		if n, _ := r1.Count(); n > 1 {
			t.Fatalf("the released lease was told %d times", n)
		}
		expectLost(t, ctx, "the other lease", p.l2)
		expectTold(t, "the other lease, after its Release", r2)
	})
	t.Run("relock lost", func(t *testing.T) {
		p := newSharedPair(t, excl(0))
		r2 := watchLoss(p.l2)
		unlockAllBehindBack(t, ctx, p.l1.(*muxLease).c)
		if next, err := p.l1.(store.Relocker).Relock(ctx); next != nil || !errors.Is(err, store.ErrLockLost) {
			t.Fatalf("Relock = %v, %v; want nil, ErrLockLost", next, err)
		}
		expectTold(t, "the other lease, when the Relock returned", r2)
	})
	t.Run("relocked lease told", func(t *testing.T) {
		p := newSharedPair(t, excl(0))
		next, err := p.l1.(store.Relocker).Relock(ctx)
		if err != nil || next == nil {
			t.Fatalf("Relock = %v, %v; want a new lease", next, err)
		}
		rn := watchLoss(next)
		unlockAllBehindBack(t, ctx, p.l2.(*muxLease).c)
		if err := p.l2.Release(ctx); !errors.Is(err, store.ErrLockLost) {
			t.Fatalf("Release = %v, want ErrLockLost", err)
		}
		expectTold(t, "the lease a Relock handed out", rn)
		expectLost(t, ctx, "the relocked lease", next.(heldLease))
	})
	t.Run("keepalive", func(t *testing.T) {
		pool := newPool(t, 2)
		b := New(pool, Options{SharedConns: 1, NoWatch: true})
		l1, l2 := mustAcquire(t, b, newKey(t, "1"), excl(0)), mustAcquire(t, b, newKey(t, "2"), excl(0))
		r1, r2 := watchLoss(l1), watchLoss(l2)
		obs := newObserver(t)
		pid := l1.PID()
		var killed bool
		if err := obs.c.QueryRow(ctx, "SELECT pg_terminate_backend($1)", int32(pid)).Scan(&killed); err != nil || !killed {
			t.Fatalf("pg_terminate_backend(%d) = %v, %v", pid, killed, err)
		}
		obs.sessionGone(pid)
		var err error
		obs.waitFor("a check to fail", func() bool { err = l1.Check(ctx); return err != nil })
		expectTold(t, "the checked lease", r1)
		expectTold(t, "the other lease, when the Check returned", r2)
		expectLost(t, ctx, "the other lease", l2)
		mustReleaseLost(t, l1)
	})
}

// mustReleaseLost releases a lease whose lock was lost.
func mustReleaseLost(t *testing.T, l store.Lease) {
	t.Helper()
	ctx, cancel := guardCtx()
	defer cancel()
	if err := l.Release(ctx); !errors.Is(err, store.ErrLockLost) {
		t.Fatalf("Release = %v, want ErrLockLost", err)
	}
}

// TestCheckTells: on a connection of its own, a keepalive that destroys
// the connection tells the listener before Check returns; a listener
// handed over after the loss is told at once; nothing is told after
// Release.
func TestCheckTells(t *testing.T) {
	pool := newPool(t, 2)
	b := New(pool, Options{SharedConns: -1, NoWatch: true})
	obs := newObserver(t)
	ctx, cancel := guardCtx()
	defer cancel()
	k := newKey(t, "k")
	l := mustAcquire(t, b, k, excl(0))
	r := watchLoss(l)
	pid := l.PID()
	terminateHolders(t, k)
	obs.sessionGone(pid)
	if err := l.Check(ctx); err == nil {
		t.Fatal("Check succeeded on a terminated session")
	}
	expectTold(t, "when Check returned", r)
	late := watchLoss(l)
	expectTold(t, "a listener handed over after the loss", late)
	mustReleaseLost(t, l)

	// Released: never told, even when a loss is found later.
	l2 := mustAcquire(t, b, newKey(t, "2"), excl(0))
	r2 := watchLoss(l2)
	mustRelease(t, l2)
	l2.(*lease).news.tell(errors.New("a loss after the release"))
	if n, _ := r2.Count(); n != 0 {
		t.Fatalf("told %d times after Release", n)
	}
	poolHoldsNone(t, pool)
}

// TestSharedConnLiveToDead: a shared connection's one state change. kill
// records the first cause only, takes the connection out of the set (the
// next lock opens another), and a lease on the dead connection reports
// the loss on Check and on Release.
func TestSharedConnLiveToDead(t *testing.T) {
	pool := newPool(t, 4)
	be := New(pool, Options{SharedConns: 1})
	ctx := context.Background()
	k := store.Key{String: "live-to-dead-" + randHex(), ID: int64(rand.Uint64() >> 1)}
	lease, err := be.Acquire(ctx, k, store.Request{})
	if err != nil {
		t.Fatal(err)
	}
	c := onlyShared(t, be)
	if c.deadCause() != nil {
		t.Fatalf("a live connection has a cause: %v", c.deadCause())
	}
	first := errors.New("first cause")
	if err := c.enter(ctx); err != nil {
		t.Fatal(err)
	}
	c.kill(first)
	c.kill(errors.New("second cause"))
	c.leave()
	if got := c.deadCause(); got != first {
		t.Fatalf("deadCause = %v, want the first cause", got)
	}
	if err := lease.(store.Checker).Check(ctx); !errors.Is(err, store.ErrLockLost) || !errors.Is(err, first) {
		t.Fatalf("Check on a dead connection = %v, want ErrLockLost and the cause", err)
	}
	if err := lease.Release(ctx); !errors.Is(err, store.ErrLockLost) {
		t.Fatalf("Release on a dead connection = %v, want ErrLockLost", err)
	}
	k2 := store.Key{String: "live-to-dead2-" + randHex(), ID: int64(rand.Uint64() >> 1)}
	l2, err := be.Acquire(ctx, k2, store.Request{})
	if err != nil {
		t.Fatal(err)
	}
	if c2 := onlyShared(t, be); c2 == c {
		t.Fatal("the dead connection is still in the shared set")
	}
	if err := l2.Release(ctx); err != nil {
		t.Fatal(err)
	}
}
