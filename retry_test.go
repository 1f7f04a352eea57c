package kannuki_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/kannuki-go/kannuki"
)

// A Retry that makes no schedule is refused before any try, whether it
// is the Locker's default strategy or a call's.
func TestRetryValidation(t *testing.T) {
	fn := func(context.Context) error { return nil }
	for _, r := range []kannuki.Retry{
		{Jitter: -0.1},
		{Jitter: 1.5},
		{Interval: -time.Millisecond},
		{MaxInterval: -time.Millisecond},
		{Multiplier: 0.5},
	} {
		l, b := newLocker(kannuki.Options{})
		err := l.WithLock(context.Background(), "k", fn, kannuki.WithStrategy(r))
		if !errors.Is(err, kannuki.ErrInvalidArgument) || b.tries.Load() != 0 {
			t.Errorf("WithStrategy(%+v): %v after %d tries; want ErrInvalidArgument before any", r, err, b.tries.Load())
		}
		l, b = newLocker(kannuki.Options{Strategy: r})
		err = l.WithLock(context.Background(), "k", fn)
		if !errors.Is(err, kannuki.ErrInvalidArgument) || b.tries.Load() != 0 {
			t.Errorf("Options.Strategy %+v: %v after %d tries; want ErrInvalidArgument before any", r, err, b.tries.Load())
		}
	}
	for _, r := range []kannuki.Retry{{}, {Jitter: 1, Multiplier: 1}, {Attempts: -1, Interval: time.Millisecond}} {
		l, _ := newLocker(kannuki.Options{})
		if err := l.WithLock(context.Background(), "k", fn, kannuki.WithStrategy(r)); err != nil {
			t.Errorf("WithStrategy(%+v): %v", r, err)
		}
	}
}
