package kannuki

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"

	"time"

	"github.com/kannuki-go/kannuki/store"
)

// Strategy decides how to obtain a lock: how many times to ask the backend
// and how long each ask may wait. wait is the call's overall budget
// (store.WaitForever, 0 or > 0). Strategies are stateless values, safe to
// share; per-call state lives in the Acquire call.
type Strategy interface {
	// Acquire calls try, once or more, until it returns a lease or gives
	// up. try asks the backend once, waiting up to its wait argument
	// (store.WaitForever, 0 for a single try, or > 0); its error matches
	// ErrNotAcquired when the lock was not granted.
	Acquire(ctx context.Context, try func(ctx context.Context, wait time.Duration) (store.Lease, error), wait time.Duration) (store.Lease, error)
}

// tryFunc is the try a Strategy is given.
type tryFunc = func(ctx context.Context, wait time.Duration) (store.Lease, error)

// blocking waits on the server: the database queues the caller and grants
// the lock when it is free, with no polling. The default strategy.
type blocking struct{}

func (blocking) Acquire(ctx context.Context, try tryFunc, wait time.Duration) (store.Lease, error) {
	return try(ctx, wait)
}

// nonBlocking tries once: TryLock's strategy.
type nonBlocking struct{}

func (nonBlocking) Acquire(ctx context.Context, try tryFunc, _ time.Duration) (store.Lease, error) {
	return try(ctx, 0)
}

// Backoff yields the pause before each next attempt; stop ends the retries.
// Its shape matches github.com/sethvargo/go-retry's Backoff.
type Backoff interface {
	Next() (next time.Duration, stop bool)
}

// Retry tries without waiting, then pauses and tries again, up to Attempts
// times. It suits contention that clears quickly; it polls, so prefer the
// default (waiting on the server) for long waits. The call's timeout and
// context bound the whole sequence.
type Retry struct {
	// Attempts is the number of tries in all: 0 means 3; negative means
	// until the timeout or the context ends.
	Attempts int
	// Interval is the first pause: 0 means 500 ms.
	Interval time.Duration
	// Multiplier scales the pause after every attempt: 0 means 2 (the pause
	// doubles), 1 keeps it constant. Other values below 1 are an error
	// matching ErrInvalidArgument; for another shape use NewBackoff.
	Multiplier float64
	// MaxInterval caps a pause; 0 means no cap.
	MaxInterval time.Duration
	// Jitter spreads each pause by up to ± this fraction (0..1) of it, so
	// that many clients do not retry in step. Outside 0..1 it is an error
	// matching ErrInvalidArgument, as are a negative Interval or MaxInterval.
	Jitter float64
	// NewBackoff, when set, replaces Interval/Multiplier/MaxInterval/Jitter
	// with a custom schedule; it is called once per call.
	NewBackoff func() Backoff
}

var errRetriesExhausted = errors.New("kannuki: gave up")

// Acquire implements Strategy.
func (r Retry) Acquire(ctx context.Context, try func(ctx context.Context, wait time.Duration) (store.Lease, error), wait time.Duration) (store.Lease, error) {
	attempts := r.Attempts
	if attempts == 0 {
		attempts = 3
	}
	var b Backoff
	if r.NewBackoff != nil {
		b = r.NewBackoff()
	} else {
		b = r.schedule()
	}
	start := time.Now()
	for n := 1; ; n++ {
		lease, err := try(ctx, 0)
		if err == nil || !errors.Is(err, ErrNotAcquired) {
			return lease, err
		}
		if attempts > 0 && n >= attempts {
			return nil, fmt.Errorf("%w after %d attempts: %w", errRetriesExhausted, n, err)
		}
		pause, stop := b.Next()
		if stop {
			return nil, fmt.Errorf("%w after %d attempts: %w", errRetriesExhausted, n, err)
		}
		if wait >= 0 {
			left := wait - time.Since(start)
			if left <= 0 {
				return nil, err
			}
			pause = min(pause, left)
		}
		if err := sleep(ctx, pause); err != nil {
			return nil, err
		}
	}
}

// check reports a Retry whose fields make no schedule.
func (r Retry) check() error {
	switch {
	case r.Jitter < 0 || r.Jitter > 1:
		return fmt.Errorf("%w: Retry.Jitter %v is outside 0..1", ErrInvalidArgument, r.Jitter)
	case r.Interval < 0 || r.MaxInterval < 0:
		return fmt.Errorf("%w: Retry.Interval and MaxInterval must not be negative", ErrInvalidArgument)
	case r.Multiplier != 0 && r.Multiplier < 1:
		return fmt.Errorf("%w: Retry.Multiplier %v is below 1", ErrInvalidArgument, r.Multiplier)
	}
	return nil
}

func (r Retry) schedule() *schedule {
	iv := r.Interval
	if iv <= 0 {
		iv = 500 * time.Millisecond
	}
	return &schedule{r: r, base: iv}
}

// schedule is Retry's built-in Backoff, one per call.
type schedule struct {
	r    Retry
	base time.Duration
	n    int
}

func (s *schedule) Next() (time.Duration, bool) {
	s.n++
	m := s.r.Multiplier
	if m == 0 {
		m = 2
	}
	d := time.Duration(float64(s.base) * math.Pow(m, float64(s.n-1)))
	if d <= 0 || d > s.base<<30 || (s.r.MaxInterval > 0 && d > s.r.MaxInterval) {
		d = s.r.MaxInterval
		if d <= 0 {
			d = s.base << 30
		}
	}
	if j := s.r.Jitter; j > 0 {
		d = time.Duration(float64(d) * (1 + j*(2*rand.Float64()-1)))
	}
	return d, false
}

// sleep pauses for d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
