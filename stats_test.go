package kannuki_test

import (
	"context"
	"testing"
	"time"

	"github.com/kannuki-go/kannuki"
)

func TestStats(t *testing.T) {
	l, b := newLocker(kannuki.Options{KeepaliveInterval: 5 * time.Millisecond})
	ctx := context.Background()
	noop := func(context.Context) error { return nil }

	h, _ := l.Acquire(ctx, "k")
	if s := l.Stats(); s.Held != 1 || s.Acquired != 1 || s.Waiting != 0 {
		t.Fatalf("after acquire: %+v", s)
	}
	_, _ = l.TryLock(ctx, "k", noop)
	_ = l.WithLock(ctx, "k", noop, kannuki.Timeout(time.Millisecond))
	h.Release(ctx)
	_ = l.WithLock(ctx, "k", func(ctx context.Context) error {
		b.failChk.Store(true)
		<-ctx.Done()
		return nil
	})
	s := l.Stats()
	if s.Held != 0 || s.Waiting != 0 || s.Acquired != 2 || s.Released != 1 || s.Lost != 1 ||
		s.NotHeld != 1 || s.NotTimeout != 1 || s.NotAcquired != 2 || s.HoldMax <= 0 || s.HoldTotal <= 0 {
		t.Fatalf("stats %+v", s)
	}
}
