package kannuki_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/kannuki-go/kannuki/store"

	"github.com/kannuki-go/kannuki"
)

// watchBackend's leases tell of a loss the moment the test says so, as a
// backend that destroyed a connection, or heard its socket, would.
type watchBackend struct {
	*chanBackend
	mu     sync.Mutex
	leases []*watchLease
}

type watchLease struct {
	*chanLease
	mu       sync.Mutex
	listener store.LossListener
	lost     error
	released bool
}

func (b *watchBackend) Acquire(ctx context.Context, k store.Key, req store.Request) (store.Lease, error) {
	l, err := b.chanBackend.Acquire(ctx, k, req)
	if err != nil {
		return nil, err
	}
	wl := &watchLease{chanLease: l.(*chanLease)}
	b.mu.Lock()
	b.leases = append(b.leases, wl)
	b.mu.Unlock()
	return wl, nil
}

func (l *watchLease) WatchLoss(ll store.LossListener) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.listener = ll
	if l.lost != nil {
		ll.LockLost(l.lost)
	}
}

func (l *watchLease) Release(ctx context.Context) error {
	l.mu.Lock()
	l.released = true
	lost := l.lost
	l.mu.Unlock()
	_ = l.chanLease.Release(ctx)
	if lost != nil {
		return &kannuki.LockLostError{Err: lost}
	}
	return nil
}

// kill is the backend destroying the lease's connection.
func (l *watchLease) kill(cause error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.lost != nil || l.released {
		return
	}
	l.lost = cause
	if l.listener != nil {
		l.listener.LockLost(cause)
	}
}

func (b *watchBackend) killAll(cause error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, l := range b.leases {
		l.kill(cause)
	}
}

// TestLossToldAtOnce: a loss the lease tells of cancels fn's context with
// ErrLockLost, closes Lost and counts in Stats before the telling call
// returns, with the keepalive off, so nothing else could have told.
func TestLossToldAtOnce(t *testing.T) {
	b := &watchBackend{chanBackend: newChanBackend()}
	l := kannuki.New(b, kannuki.Options{KeepaliveInterval: -1})
	cause := errors.New("connection destroyed")
	inFn := make(chan context.Context)
	done := make(chan error)
	go func() {
		done <- l.WithLock(context.Background(), "k", func(ctx context.Context) error {
			inFn <- ctx
			<-ctx.Done()
			return ctx.Err()
		})
	}()
	fctx := <-inFn
	h, err := l.Acquire(context.Background(), "h")
	if err != nil {
		t.Fatal(err)
	}
	b.killAll(cause)
	// Told before killAll returned: no waiting here.
	if fctx.Err() == nil {
		t.Fatal("fn's context not canceled when the kill returned")
	}
	if c := context.Cause(fctx); !errors.Is(c, kannuki.ErrLockLost) || !errors.Is(c, cause) {
		t.Fatalf("fn's context cause %v, want ErrLockLost and the cause", c)
	}
	select {
	case <-h.Lost():
	default:
		t.Fatal("Handle.Lost not closed when the kill returned")
	}
	if err := h.Err(); !errors.Is(err, kannuki.ErrLockLost) {
		t.Fatalf("Handle.Err = %v", err)
	}
	if s := l.Stats(); s.Lost != 2 {
		t.Fatalf("Stats.Lost = %d, want 2", s.Lost)
	}
	if err := <-done; !errors.Is(err, kannuki.ErrLockLost) {
		t.Fatalf("WithLock = %v, want ErrLockLost", err)
	}
	if err := h.Release(context.Background()); !errors.Is(err, kannuki.ErrLockLost) {
		t.Fatalf("Release = %v, want ErrLockLost", err)
	}
	if s := l.Stats(); s.Lost != 2 || s.Released != 0 || s.Held != 0 {
		t.Fatalf("Stats after release: %+v", s)
	}
}

// TestLossBeforeWatch: a loss the lease knew of before the Locker handed it
// a listener is told at once, and fn does not run.
func TestLossBeforeWatch(t *testing.T) {
	b := &lostFirstBackend{chanBackend: newChanBackend()}
	l := kannuki.New(b, kannuki.Options{KeepaliveInterval: -1})
	err := l.WithLock(context.Background(), "k", func(ctx context.Context) error {
		t.Error("fn ran on a lock already lost")
		return nil
	})
	if !errors.Is(err, kannuki.ErrLockLost) {
		t.Fatalf("WithLock = %v, want ErrLockLost", err)
	}
	if s := l.Stats(); s.Lost != 1 || s.Held != 0 {
		t.Fatalf("Stats %+v", s)
	}
	if held, _ := b.Held(context.Background(), store.Key{String: "k"}); held {
		t.Fatal("the lost lease was not released")
	}
}

type lostFirstBackend struct{ *chanBackend }

func (b *lostFirstBackend) Acquire(ctx context.Context, k store.Key, req store.Request) (store.Lease, error) {
	l, err := b.chanBackend.Acquire(ctx, k, req)
	if err != nil {
		return nil, err
	}
	return &watchLease{chanLease: l.(*chanLease), lost: errors.New("gone before the watch")}, nil
}

// TestLossAfterReleaseIgnored: a lease that tells of a loss while its
// Handle is being released does not count it twice.
func TestLossAfterReleaseIgnored(t *testing.T) {
	b := &watchBackend{chanBackend: newChanBackend()}
	l := kannuki.New(b, kannuki.Options{KeepaliveInterval: -1})
	h, err := l.Acquire(context.Background(), "k")
	if err != nil {
		t.Fatal(err)
	}
	if err := h.Release(context.Background()); err != nil {
		t.Fatal(err)
	}
	b.leases[0].listener.LockLost(errors.New("late"))
	if h.Err() != nil {
		t.Fatalf("a released Handle took a late loss: %v", h.Err())
	}
	if s := l.Stats(); s.Lost != 0 || s.Released != 1 {
		t.Fatalf("Stats %+v", s)
	}
}

// TestMaxHeld: the call past Options.MaxHeld fails with ErrCapacity without
// asking the backend; a release makes room; concurrent callers never hold
// more than the bound.
func TestMaxHeld(t *testing.T) {
	l, b := newLocker(kannuki.Options{MaxHeld: 2})
	ctx := context.Background()
	h1, err := l.Acquire(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}
	h2, err := l.Acquire(ctx, "b")
	if err != nil {
		t.Fatal(err)
	}
	tries := b.tries.Load()
	_, err = l.Acquire(ctx, "c")
	var na *kannuki.NotAcquiredError
	if !errors.Is(err, kannuki.ErrCapacity) || !errors.As(err, &na) || na.Reason != kannuki.ReasonCapacity {
		t.Fatalf("third Acquire = %v, want ErrCapacity with ReasonCapacity", err)
	}
	if b.tries.Load() != tries {
		t.Fatal("the refused call asked the backend")
	}
	if ok, err := l.TryLock(ctx, "c", func(context.Context) error { return nil }); ok || !errors.Is(err, kannuki.ErrCapacity) {
		t.Fatalf("TryLock past MaxHeld = %v, %v", ok, err)
	}
	if s := l.Stats(); s.NotCapacity != 2 || s.Waiting != 0 {
		t.Fatalf("Stats %+v", s)
	}
	_ = h1.Release(ctx)
	h3, err := l.Acquire(ctx, "c")
	if err != nil {
		t.Fatalf("after a release: %v", err)
	}
	_ = h2.Release(ctx)
	_ = h3.Release(ctx)

	// Many goroutines, a bound of 3: never more than 3 inside at once.
	l3, _ := newLocker(kannuki.Options{MaxHeld: 3})
	var mu sync.Mutex
	in, most, refused := 0, 0, 0
	var wg sync.WaitGroup
	for g := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 50 {
				err := l3.WithLock(ctx, string(rune('a'+g))+string(rune('0'+i%10)), func(context.Context) error {
					mu.Lock()
					in++
					most = max(most, in)
					mu.Unlock()
					time.Sleep(50 * time.Microsecond)
					mu.Lock()
					in--
					mu.Unlock()
					return nil
				})
				if errors.Is(err, kannuki.ErrCapacity) {
					mu.Lock()
					refused++
					mu.Unlock()
				} else if err != nil {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	if most > 3 {
		t.Fatalf("%d held at once under MaxHeld 3", most)
	}
	if s := l3.Stats(); s.Held != 0 || s.NotCapacity != int64(refused) {
		t.Fatalf("Stats %+v, refused %d", s, refused)
	}
	if _, err := kannuki.New(newChanBackend(), kannuki.Options{MaxHeld: -1}).Acquire(ctx, "x"); !errors.Is(err, kannuki.ErrInvalidArgument) {
		t.Fatalf("negative MaxHeld: %v", err)
	}
}

// TestMaxHeldLostFreesSlot: a lost lock gives its place back.
func TestMaxHeldLostFreesSlot(t *testing.T) {
	b := &watchBackend{chanBackend: newChanBackend()}
	l := kannuki.New(b, kannuki.Options{MaxHeld: 1, KeepaliveInterval: -1})
	ctx := context.Background()
	h, err := l.Acquire(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}
	b.killAll(errors.New("gone"))
	h2, err := l.Acquire(ctx, "b")
	if err != nil {
		t.Fatalf("after a loss: %v", err)
	}
	_ = h.Release(ctx)
	_ = h2.Release(ctx)
	if h3, err := l.Acquire(ctx, "c"); err != nil {
		t.Fatalf("after both ended: %v", err)
	} else {
		_ = h3.Release(ctx)
	}
}
