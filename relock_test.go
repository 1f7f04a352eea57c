package kannuki_test

import (
	"context"
	"errors"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kannuki-go/kannuki/store"

	"github.com/kannuki-go/kannuki"
)

// relockBackend is a chanBackend whose leases are Relockers. Like
// PostgreSQL, the channel gives a released lock to a sender already
// blocked on it (another "process" waiting in the store) before the
// relock's try runs, so the try then fails.
type relockBackend struct {
	*chanBackend
	inside  atomic.Int64 // Acquire calls running now
	relocks atomic.Int64 // Relock calls
	handed  atomic.Int64 // Relock calls whose try got the lock
	// pause, when not nil, is waited on by Relock after its try.
	pause chan struct{}
}

func newRelockBackend() *relockBackend { return &relockBackend{chanBackend: newChanBackend()} }

func (b *relockBackend) Acquire(ctx context.Context, k store.Key, req store.Request) (store.Lease, error) {
	b.inside.Add(1)
	defer b.inside.Add(-1)
	l, err := b.chanBackend.Acquire(ctx, k, req)
	if err != nil {
		return nil, err
	}
	return &relockLease{chanLease: l.(*chanLease), b: b}, nil
}

type relockLease struct {
	*chanLease
	b *relockBackend
}

func (l *relockLease) Relock(ctx context.Context) (store.Lease, error) {
	l.b.relocks.Add(1)
	if err := l.Release(ctx); err != nil {
		return nil, err
	}
	var next store.Lease
	select {
	case l.c <- struct{}{}:
		l.b.handed.Add(1)
		next = &relockLease{chanLease: &chanLease{b: l.chanLease.b, c: l.c}, b: l.b}
	default:
	}
	if l.b.pause != nil {
		<-l.b.pause
	}
	return next, nil
}

// TestRelockHandsOverInProcess: goroutines of one Locker take turns on a
// hot key; the leaving holder's relock takes the lock for the next one,
// who then does not ask the backend. Some waiters give up on the way, which
// must neither leave the key held nor let two hold it.
func TestRelockHandsOverInProcess(t *testing.T) {
	b := newRelockBackend()
	l := kannuki.New(b, kannuki.Options{})
	ctx := context.Background()
	var holders, overlaps, done, gaveUp atomic.Int64
	var wg sync.WaitGroup
	for g := range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 20 {
				cctx, cancel := ctx, context.CancelFunc(func() {})
				if (g+i)%5 == 0 {
					cctx, cancel = context.WithTimeout(ctx, time.Duration(rand.IntN(300))*time.Microsecond)
				}
				err := l.WithLock(cctx, "hot", func(context.Context) error {
					if holders.Add(1) != 1 {
						overlaps.Add(1)
					}
					time.Sleep(20 * time.Microsecond)
					holders.Add(-1)
					return nil
				})
				cancel()
				switch {
				case err == nil:
					done.Add(1)
				case errors.Is(err, context.DeadlineExceeded):
					gaveUp.Add(1)
				default:
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	if overlaps.Load() != 0 || done.Load()+gaveUp.Load() != 32*20 {
		t.Fatalf("%d overlaps; %d done + %d gave up of %d", overlaps.Load(), done.Load(), gaveUp.Load(), 32*20)
	}
	if b.handed.Load() == 0 {
		t.Fatalf("no handoff by relock in %d relocks", b.relocks.Load())
	}
	if held, _ := l.Held(ctx, "hot"); held {
		t.Fatal("the key is still held")
	}
	if s := l.Stats(); s.Held != 0 || s.Waiting != 0 || s.Relocked == 0 || s.Relocked > b.handed.Load() || s.Acquired != done.Load() {
		t.Fatalf("stats after the run: %+v (%d handed over by relocks, %d done)", s, b.handed.Load(), done.Load())
	}
	t.Logf("%d done, %d gave up, %d relocks, %d handed over, %d backend acquires", done.Load(), gaveUp.Load(), b.relocks.Load(), b.handed.Load(), b.tries.Load())
}

// TestRelockYieldsToAnotherProcess: when another process waits in the
// store, the relock's try loses to it, and the local waiter waits in the
// store after it: no process is starved by another's local queue.
func TestRelockYieldsToAnotherProcess(t *testing.T) {
	b := newRelockBackend()
	mine, other := kannuki.New(b, kannuki.Options{}), kannuki.New(b, kannuki.Options{})
	ctx := context.Background()
	h, err := mine.Acquire(ctx, "k")
	if err != nil {
		t.Fatal(err)
	}
	otherGot := acquireLater(t, other, "k")
	waitFor(t, "the other process waits in the store", func() bool { return b.inside.Load() == 1 })
	localGot := acquireLater(t, mine, "k")
	waitFor(t, "the local waiter queues", func() bool { return mine.Stats().Waiting == 1 })
	if err := h.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if b.relocks.Load() != 1 || b.handed.Load() != 0 {
		t.Fatalf("%d relocks, %d handed over; want 1, 0", b.relocks.Load(), b.handed.Load())
	}
	oh := <-otherGot // the other process had it first
	select {
	case <-localGot:
		t.Fatal("the local waiter holds the key with the other process")
	default:
	}
	if err := oh.Release(ctx); err != nil {
		t.Fatal(err)
	}
	lh := <-localGot
	if err := lh.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if held, _ := mine.Held(ctx, "k"); held {
		t.Fatal("the key is still held")
	}
}

// TestRelockForAWaiterThatGaveUp: the lock a relock took for a waiter that
// gave up meanwhile is released, not left held.
func TestRelockForAWaiterThatGaveUp(t *testing.T) {
	b := newRelockBackend()
	b.pause = make(chan struct{})
	l := kannuki.New(b, kannuki.Options{})
	ctx := context.Background()
	h, err := l.Acquire(ctx, "k")
	if err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithCancel(ctx)
	waited := make(chan error, 1)
	go func() { _, err := l.Acquire(wctx, "k"); waited <- err }()
	waitFor(t, "the waiter queues", func() bool { return l.Stats().Waiting == 1 })
	released := make(chan error, 1)
	go func() { released <- h.Release(ctx) }()
	waitFor(t, "the relock takes the lock for the waiter", func() bool { return b.handed.Load() == 1 })
	cancel()
	if err := <-waited; !errors.Is(err, context.Canceled) {
		t.Fatalf("waiter: %v, want context.Canceled", err)
	}
	close(b.pause)
	if err := <-released; err != nil {
		t.Fatal(err)
	}
	if held, _ := l.Held(ctx, "k"); held {
		t.Fatal("the lock taken for the waiter that gave up is still held")
	}
	// The key is free for the next caller, in the process and in the store.
	ok, err := l.TryLock(ctx, "k", func(context.Context) error { return nil })
	if !ok || err != nil {
		t.Fatalf("TryLock after: %v, %v", ok, err)
	}
}

// acquireLater runs l.Acquire(key) on a goroutine of its own and delivers
// the Handle (nil after an error, which fails the test).
func acquireLater(t *testing.T, l *kannuki.Locker, key string) <-chan *kannuki.Handle {
	got := make(chan *kannuki.Handle, 1)
	go func() {
		h, err := l.Acquire(context.Background(), key)
		if err != nil {
			t.Error(err)
		}
		got <- h
	}()
	return got
}

// waitFor polls cond until it holds; it fails the test after a minute.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for end := time.Now().Add(time.Minute); !cond(); time.Sleep(100 * time.Microsecond) {
		if time.Now().After(end) {
			t.Fatalf("timed out waiting until %s", what)
		}
	}
}
