package kannuki

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"
)

// TryFunc asks the backend for the lock once, waiting up to wait
// (WaitForever, 0 for a single try, or > 0). It is what a Strategy calls.
type TryFunc func(ctx context.Context, wait time.Duration) (Lease, error)

// Strategy decides how to obtain a lock: how many times to ask the backend
// and how long each ask may wait. wait is the call's overall budget
// (WaitForever, 0 or > 0). Strategies are stateless values, safe to share;
// per-call state lives in the Acquire call.
type Strategy interface {
	Acquire(ctx context.Context, try TryFunc, wait time.Duration) (Lease, error)
}

// Blocking waits on the server: the database queues the caller and grants
// the lock when it is free, with no polling. The default.
type Blocking struct{}

// Acquire implements Strategy.
func (Blocking) Acquire(ctx context.Context, try TryFunc, wait time.Duration) (Lease, error) {
	return try(ctx, wait)
}

// NonBlocking tries once and gives up at once if the lock is held.
type NonBlocking struct{}

// Acquire implements Strategy.
func (NonBlocking) Acquire(ctx context.Context, try TryFunc, _ time.Duration) (Lease, error) {
	return try(ctx, 0)
}

// Backoff yields the pause before each next attempt; stop ends the retries.
// Its shape matches github.com/sethvargo/go-retry's Backoff.
type Backoff interface {
	Next() (next time.Duration, stop bool)
}

// BackoffKind selects how Retry's pause grows.
type BackoffKind uint8

const (
	// Exponential doubles the pause after every attempt (the default).
	Exponential BackoffKind = iota
	// Linear adds Interval after every attempt.
	Linear
	// Constant waits Interval every time.
	Constant
)

// Retry tries without waiting, then pauses and tries again, up to Attempts
// times. It suits contention that clears quickly; it polls, so prefer
// Blocking for long waits. The call's timeout and context bound the whole
// sequence.
type Retry struct {
	// Attempts is the number of tries in all: 0 means 3; negative means
	// until the timeout or the context ends.
	Attempts int
	// Interval is the first pause: 0 means 500 ms.
	Interval time.Duration
	// Backoff is how the pause grows; the zero value is Exponential.
	Backoff BackoffKind
	// MaxInterval caps a pause; 0 means no cap.
	MaxInterval time.Duration
	// Jitter spreads each pause by up to ± this fraction (0..1) of it, so
	// that many clients do not retry in step.
	Jitter float64
	// NewBackoff, when set, replaces Interval/Backoff/MaxInterval/Jitter
	// with a custom schedule; it is called once per call.
	NewBackoff func() Backoff
}

var errRetriesExhausted = errors.New("kannuki: retries exhausted")

// Acquire implements Strategy.
func (r Retry) Acquire(ctx context.Context, try TryFunc, wait time.Duration) (Lease, error) {
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
	var d time.Duration
	switch s.r.Backoff {
	case Constant:
		d = s.base
	case Linear:
		d = s.base * time.Duration(s.n)
	default:
		shift := min(s.n-1, 30)
		d = s.base << shift
	}
	if d <= 0 || (s.r.MaxInterval > 0 && d > s.r.MaxInterval) {
		d = s.r.MaxInterval
		if d <= 0 {
			d = s.base << 30
		}
	}
	if j := s.r.Jitter; j > 0 {
		j = min(j, 1)
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
