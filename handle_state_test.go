package kannuki_test

import (
	"context"
	"errors"
	"testing"

	"github.com/kannuki-go/kannuki/store"

	"github.com/kannuki-go/kannuki"
)

// The tests below are named after the arrows of the Handle's state
// diagram (handleState in handle.go). Each runs with Options.MaxHeld 1, so
// that a place under MaxHeld given back too early, twice or never shows
// as a wrong answer to the next Acquire.

// stateBackend's leases release as the test says: at once, after a gate,
// or reporting the lock lost.
type stateBackend struct {
	*watchBackend
	gate        chan struct{} // when set, Release waits for it to close
	entered     chan struct{} // when set, Release closes it on entry
	releaseLost bool          // Release reports ErrLockLost
}

type stateLease struct {
	*watchLease
	b *stateBackend
}

func newStateLocker() (*kannuki.Locker, *stateBackend) {
	b := &stateBackend{watchBackend: &watchBackend{chanBackend: newChanBackend()}}
	return kannuki.New(b, kannuki.Options{MaxHeld: 1, KeepaliveInterval: -1}), b
}

func (b *stateBackend) Acquire(ctx context.Context, k store.Key, req store.Request) (store.Lease, error) {
	l, err := b.watchBackend.Acquire(ctx, k, req)
	if err != nil {
		return nil, err
	}
	return &stateLease{watchLease: l.(*watchLease), b: b}, nil
}

func (l *stateLease) Release(ctx context.Context) error {
	if l.b.entered != nil {
		close(l.b.entered)
	}
	if l.b.gate != nil {
		<-l.b.gate
	}
	err := l.watchLease.Release(ctx)
	if err == nil && l.b.releaseLost {
		return &kannuki.LockLostError{Err: errors.New("the unlock found it not held")}
	}
	return err
}

// wantPlaces checks how many Handles the Locker counts under MaxHeld 1:
// 0 means a new Acquire succeeds (and is released again), 1 that it is
// refused with ErrCapacity.
func wantPlaces(t *testing.T, l *kannuki.Locker, n int) {
	t.Helper()
	h, err := l.Acquire(context.Background(), "probe", kannuki.Timeout(0))
	switch {
	case n == 0 && err != nil:
		t.Fatalf("Acquire with no place taken: %v", err)
	case n == 0:
		if err := h.Release(context.Background()); err != nil {
			t.Fatal(err)
		}
	case err == nil:
		_ = h.Release(context.Background())
		t.Fatal("Acquire succeeded past MaxHeld: a place was given back twice")
	case !errors.Is(err, kannuki.ErrCapacity):
		t.Fatalf("Acquire past MaxHeld: %v, want ErrCapacity", err)
	}
}

func TestHandleHeldToReleasingToReleased(t *testing.T) {
	l, _ := newStateLocker()
	h, err := l.Acquire(context.Background(), "k")
	if err != nil {
		t.Fatal(err)
	}
	wantPlaces(t, l, 1)
	if err := h.Release(context.Background()); err != nil {
		t.Fatalf("Release = %v", err)
	}
	if err := h.Err(); err != nil {
		t.Fatalf("Err after a release = %v", err)
	}
	if err := h.Release(context.Background()); err != nil {
		t.Fatalf("second Release = %v, want nil", err)
	}
	wantPlaces(t, l, 0)
	if s := l.Stats(); s.Released != 2 || s.Lost != 0 || s.Held != 0 { // the probe counts too
		t.Fatalf("Stats %+v", s)
	}
}

func TestHandleHeldToLost(t *testing.T) {
	l, b := newStateLocker()
	h, err := l.Acquire(context.Background(), "k")
	if err != nil {
		t.Fatal(err)
	}
	cause := errors.New("connection destroyed")
	b.killAll(cause)
	select {
	case <-h.Lost():
	default:
		t.Fatal("Lost not closed")
	}
	if err := h.Err(); !errors.Is(err, kannuki.ErrLockLost) || !errors.Is(err, cause) {
		t.Fatalf("Err = %v, want ErrLockLost and the cause", err)
	}
	wantPlaces(t, l, 0) // a lost lock holds no place, before any Release
	b.leases[0].listener.LockLost(errors.New("told twice"))
	if err := h.Err(); !errors.Is(err, cause) {
		t.Fatalf("a second loss replaced the first: %v", err)
	}
	if s := l.Stats(); s.Lost != 1 {
		t.Fatalf("Stats.Lost = %d, want 1", s.Lost)
	}
	_ = h.Release(context.Background())
}

func TestHandleLostToReleased(t *testing.T) {
	l, b := newStateLocker()
	h, err := l.Acquire(context.Background(), "k")
	if err != nil {
		t.Fatal(err)
	}
	b.killAll(errors.New("connection destroyed"))
	if err := h.Release(context.Background()); !errors.Is(err, kannuki.ErrLockLost) {
		t.Fatalf("Release of a lost lock = %v, want ErrLockLost", err)
	}
	if held, _ := b.Held(context.Background(), store.Key{String: "k"}); held {
		t.Fatal("the lost lease was not ended")
	}
	if err := h.Release(context.Background()); err != nil {
		t.Fatalf("second Release = %v, want nil", err)
	}
	if err := h.Err(); !errors.Is(err, kannuki.ErrLockLost) {
		t.Fatalf("Err after the release = %v, want the loss", err)
	}
	wantPlaces(t, l, 0)
	_, err2 := l.Acquire(context.Background(), "a")
	if err2 != nil {
		t.Fatal(err2)
	}
	wantPlaces(t, l, 1) // the lost Handle gave its place back once, not twice
	if s := l.Stats(); s.Lost != 1 || s.Released != 1 {
		t.Fatalf("Stats %+v", s)
	}
}

func TestHandleReleasingIgnoresLoss(t *testing.T) {
	l, b := newStateLocker()
	h, err := l.Acquire(context.Background(), "k")
	if err != nil {
		t.Fatal(err)
	}
	b.gate, b.entered = make(chan struct{}), make(chan struct{})
	done := make(chan error, 1)
	go func() { done <- h.Release(context.Background()) }()
	<-b.entered
	b.leases[0].listener.LockLost(errors.New("told while releasing"))
	if err := h.Err(); err != nil {
		t.Fatalf("a loss told while releasing was recorded: %v", err)
	}
	wantPlaces(t, l, 1) // releasing still holds its place
	close(b.gate)
	if err := <-done; err != nil {
		t.Fatalf("Release = %v; the release's outcome is what counts", err)
	}
	b.gate, b.entered = nil, nil
	wantPlaces(t, l, 0)
	if s := l.Stats(); s.Lost != 0 {
		t.Fatalf("Stats.Lost = %d, want 0", s.Lost)
	}
}

func TestHandleReleasingToReleasedLost(t *testing.T) {
	l, b := newStateLocker()
	h, err := l.Acquire(context.Background(), "k")
	if err != nil {
		t.Fatal(err)
	}
	b.releaseLost = true
	if err := h.Release(context.Background()); !errors.Is(err, kannuki.ErrLockLost) {
		t.Fatalf("Release = %v, want ErrLockLost", err)
	}
	if err := h.Err(); !errors.Is(err, kannuki.ErrLockLost) {
		t.Fatalf("Err = %v, want the loss the release found", err)
	}
	select {
	case <-h.Lost():
	default:
		t.Fatal("Lost not closed")
	}
	b.releaseLost = false
	_, err = l.Acquire(context.Background(), "a")
	if err != nil {
		t.Fatal(err)
	}
	wantPlaces(t, l, 1) // given back once
	if s := l.Stats(); s.Lost != 1 || s.Released != 0 {
		t.Fatalf("Stats %+v", s)
	}
}
