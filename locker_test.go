package kannuki_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kannuki-go/kannuki/store"

	"go.uber.org/goleak"

	"github.com/kannuki-go/kannuki"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// chanBackend is a minimal Backend for testing the Locker's own logic
// (strategies, errors, re-entrancy, keepalive): one buffered channel per key
// is a mutex. Real stores are tested through backendtest.
type chanBackend struct {
	mu      sync.Mutex
	locks   map[string]chan struct{}
	tries   atomic.Int64
	failChk atomic.Bool // Check fails: simulates a killed session
	relCtx  atomic.Value
}

func newChanBackend() *chanBackend { return &chanBackend{locks: map[string]chan struct{}{}} }

func (b *chanBackend) ch(k store.Key) chan struct{} {
	b.mu.Lock()
	defer b.mu.Unlock()
	c, ok := b.locks[k.String]
	if !ok {
		c = make(chan struct{}, 1)
		b.locks[k.String] = c
	}
	return c
}

func (b *chanBackend) Acquire(ctx context.Context, k store.Key, req store.Request) (store.Lease, error) {
	b.tries.Add(1)
	if req.Mode == store.ModeShared {
		return nil, kannuki.ErrUnsupported
	}
	c := b.ch(k)
	var timeout <-chan time.Time
	switch {
	case req.Wait == 0:
		select {
		case c <- struct{}{}:
			return &chanLease{b: b, c: c}, nil
		default:
			return nil, kannuki.ErrNotAcquired
		}
	case req.Wait > 0:
		t := time.NewTimer(req.Wait)
		defer t.Stop()
		timeout = t.C
	}
	select {
	case c <- struct{}{}:
		return &chanLease{b: b, c: c}, nil
	case <-timeout:
		return nil, kannuki.ErrNotAcquired
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (b *chanBackend) Held(_ context.Context, k store.Key) (bool, error) {
	return len(b.ch(k)) == 1, nil
}

type chanLease struct {
	b *chanBackend
	c chan struct{}
}

func (l *chanLease) Release(ctx context.Context) error {
	l.b.relCtx.Store(ctx.Err() == nil)
	<-l.c
	return nil
}

func (l *chanLease) Check(context.Context) error {
	if l.b.failChk.Load() {
		return errors.New("connection reset by peer")
	}
	return nil
}

func newLocker(opts kannuki.Options) (*kannuki.Locker, *chanBackend) {
	b := newChanBackend()
	return kannuki.New(b, opts), b
}

func TestWithLockRunsFnAndReturnsItsError(t *testing.T) {
	l, b := newLocker(kannuki.Options{KeyPrefix: "app"})
	ctx := context.Background()
	want := errors.New("boom")
	err := l.WithLock(ctx, "k", func(ctx context.Context) error {
		if held, _ := b.Held(ctx, store.Key{String: "app/k"}); !held {
			t.Error("lock not held inside fn")
		}
		return want
	})
	if !errors.Is(err, want) {
		t.Fatalf("got %v, want fn's error", err)
	}
	if held, _ := l.Held(ctx, "k"); held {
		t.Fatal("lock still held after WithLock")
	}
}

func TestTryLockHeldIsFalseNil(t *testing.T) {
	l, _ := newLocker(kannuki.Options{})
	ctx := context.Background()
	h, err := l.Acquire(ctx, "k")
	if err != nil {
		t.Fatal(err)
	}
	ran := false
	ok, err := l.TryLock(ctx, "k", func(context.Context) error { ran = true; return nil }, kannuki.Timeout(time.Hour))
	if ok || err != nil || ran {
		t.Fatalf("TryLock on a held key = %v, %v (ran %v); want false, nil", ok, err, ran)
	}
	if _, err := l.Acquire(ctx, "k", kannuki.Timeout(0)); !isReason(err, kannuki.ReasonHeld) {
		t.Fatalf("TryAcquire = %v, want reason held", err)
	}
	if err := h.Release(ctx); err != nil {
		t.Fatal(err)
	}
	ok, err = l.TryLock(ctx, "k", func(context.Context) error { return nil })
	if !ok || err != nil {
		t.Fatalf("TryLock on a free key = %v, %v", ok, err)
	}
}

func isReason(err error, r kannuki.Reason) bool {
	var na *kannuki.NotAcquiredError
	return errors.As(err, &na) && na.Reason == r && errors.Is(err, kannuki.ErrNotAcquired)
}

func TestTimeoutStates(t *testing.T) {
	l, _ := newLocker(kannuki.Options{DefaultTimeout: time.Hour})
	ctx := context.Background()
	h, _ := l.Acquire(ctx, "k")
	defer h.Release(ctx)
	noop := func(context.Context) error { return nil }

	const d = 50 * time.Millisecond
	start := time.Now()
	err := l.WithLock(ctx, "k", noop, kannuki.Timeout(d))
	if !isReason(err, kannuki.ReasonTimeout) || time.Since(start) < d {
		t.Fatalf("wait up to d: %v after %s", err, time.Since(start))
	}
	var na *kannuki.NotAcquiredError
	errors.As(err, &na)
	if na.Key != "k" || na.Waited < d || !strings.HasPrefix(err.Error(), "kannuki: ") {
		t.Fatalf("typed error lacks key or wait: %+v", na)
	}
	if err := l.WithLock(ctx, "k", noop, kannuki.Timeout(0)); !isReason(err, kannuki.ReasonHeld) {
		t.Fatalf("try once: %v", err)
	}
	// NoTimeout waits until the context ends, overriding DefaultTimeout.
	cctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	err = l.WithLock(cctx, "k", noop, kannuki.NoTimeout())
	if !isReason(err, kannuki.ReasonTimeout) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("forever bounded by ctx deadline: %v", err)
	}
}

func TestCanceledContext(t *testing.T) {
	l, _ := newLocker(kannuki.Options{})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := l.WithLock(ctx, "k", func(context.Context) error { t.Error("fn ran"); return nil })
	if !isReason(err, kannuki.ReasonCanceled) || !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v", err)
	}
}

func TestBadArguments(t *testing.T) {
	l, _ := newLocker(kannuki.Options{})
	ctx := context.Background()
	noop := func(context.Context) error { return nil }
	for name, err := range map[string]error{
		"nil fn":           l.WithLock(ctx, "k", nil),
		"negative timeout": l.WithLock(ctx, "k", noop, kannuki.Timeout(-time.Second)),
		//lint:ignore SA1012 a nil context is the bad input under test
		"nil ctx":          l.WithLock(nil, "k", noop),
		"nil strategy":     l.WithLock(ctx, "k", noop, kannuki.WithStrategy(nil)),
		"nil backend":      kannuki.New(nil, kannuki.Options{}).WithLock(ctx, "k", noop),
		"negative default": kannuki.New(newChanBackend(), kannuki.Options{DefaultTimeout: -1}).WithLock(ctx, "k", noop),
	} {
		if !errors.Is(err, kannuki.ErrInvalidArgument) || !strings.HasPrefix(err.Error(), "kannuki: ") {
			t.Errorf("%s: got %v, want ErrInvalidArgument", name, err)
		}
	}
	if err := l.WithLock(ctx, "", noop); !errors.Is(err, kannuki.ErrInvalidKey) {
		t.Errorf("empty key: %v", err)
	}
	if _, err := l.Acquire(ctx, "k", kannuki.Shared()); !errors.Is(err, kannuki.ErrUnsupported) {
		t.Errorf("shared on a backend without it: %v", err)
	}
}

func TestPanicReleasesAndPropagates(t *testing.T) {
	l, _ := newLocker(kannuki.Options{})
	ctx := context.Background()
	func() {
		defer func() {
			if r := recover(); r != "boom" {
				t.Fatalf("recovered %v, want the panic to propagate", r)
			}
		}()
		_ = l.WithLock(ctx, "k", func(context.Context) error { panic("boom") })
	}()
	if held, _ := l.Held(ctx, "k"); held {
		t.Fatal("panic left the lock held")
	}
}

func TestReentrancy(t *testing.T) {
	l, b := newLocker(kannuki.Options{})
	ctx := context.Background()
	depth := 0
	err := l.WithLock(ctx, "k", func(ctx context.Context) error {
		return l.WithLock(ctx, "k", func(ctx context.Context) error {
			ok, err := l.TryLock(ctx, "k", func(context.Context) error { depth = 3; return nil })
			if !ok || err != nil {
				t.Errorf("nested TryLock: %v %v", ok, err)
			}
			return nil
		})
	})
	if err != nil || depth != 3 {
		t.Fatalf("nested: %v, depth %d", err, depth)
	}
	if n := b.tries.Load(); n != 1 {
		t.Fatalf("nested calls asked the backend %d times, want 1", n)
	}
	// Another goroutine on the same key waits like for a mutex.
	got := make(chan struct{})
	release := make(chan struct{})
	go func() {
		_ = l.WithLock(ctx, "k", func(context.Context) error { close(got); <-release; return nil })
	}()
	<-got
	ok, _ := l.TryLock(ctx, "k", func(context.Context) error { return nil })
	if ok {
		t.Fatal("a different call chain must not re-enter")
	}
	close(release)
}

func TestReentrantUpgradeFails(t *testing.T) {
	b := &sharedOK{chanBackend: newChanBackend()}
	l := kannuki.New(b, kannuki.Options{})
	err := l.WithLock(context.Background(), "k", func(ctx context.Context) error {
		return l.WithLock(ctx, "k", func(context.Context) error { return nil })
	}, kannuki.Shared())
	if !errors.Is(err, kannuki.ErrDeadlock) {
		t.Fatalf("shared -> exclusive nested: %v, want ErrDeadlock", err)
	}
}

// sharedOK treats shared requests as exclusive, enough for the upgrade test.
type sharedOK struct{ *chanBackend }

func (s *sharedOK) Acquire(ctx context.Context, k store.Key, req store.Request) (store.Lease, error) {
	req.Mode = store.ModeExclusive
	return s.chanBackend.Acquire(ctx, k, req)
}

func TestLockLossCancelsFn(t *testing.T) {
	var lost atomic.Int32
	hook := kannuki.HookFunc(func(_ context.Context, e kannuki.Event) {
		if e.Kind == kannuki.EventLost {
			lost.Add(1)
		}
	})
	l, b := newLocker(kannuki.Options{KeepaliveInterval: 10 * time.Millisecond, Hook: hook})
	err := l.WithLock(context.Background(), "k", func(ctx context.Context) error {
		b.failChk.Store(true)
		<-ctx.Done()
		if !errors.Is(context.Cause(ctx), kannuki.ErrLockLost) {
			t.Errorf("cause %v", context.Cause(ctx))
		}
		return ctx.Err()
	})
	var le *kannuki.LockLostError
	if !errors.Is(err, kannuki.ErrLockLost) || !errors.As(err, &le) || le.Key != "k" {
		t.Fatalf("got %v, want ErrLockLost", err)
	}
	if lost.Load() != 1 {
		t.Fatalf("EventLost emitted %d times", lost.Load())
	}
}

func TestHandleLostAndRelease(t *testing.T) {
	l, b := newLocker(kannuki.Options{KeepaliveInterval: 10 * time.Millisecond})
	h, err := l.Acquire(context.Background(), "k")
	if err != nil {
		t.Fatal(err)
	}
	b.failChk.Store(true)
	<-h.Lost()
	if !errors.Is(h.Err(), kannuki.ErrLockLost) {
		t.Fatalf("Err() = %v", h.Err())
	}
	if err := h.Release(context.Background()); !errors.Is(err, kannuki.ErrLockLost) {
		t.Fatalf("Release of a lost lock = %v", err)
	}
}

func TestReleaseIdempotentWithCanceledContext(t *testing.T) {
	l, b := newLocker(kannuki.Options{})
	h, err := l.Acquire(context.Background(), "k")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := h.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if live, _ := b.relCtx.Load().(bool); !live {
		t.Fatal("the backend got a canceled context for the release")
	}
	if err := h.Release(ctx); err != nil {
		t.Fatalf("second Release: %v", err)
	}
	if held, _ := l.Held(context.Background(), "k"); held {
		t.Fatal("still held")
	}
}

func TestRetryStrategy(t *testing.T) {
	// Without the local queue, so that every try reaches the backend.
	l, b := newLocker(kannuki.Options{NoLocalQueue: true})
	ctx := context.Background()
	h, _ := l.Acquire(ctx, "k")
	defer h.Release(ctx)
	b.tries.Store(0)
	s := kannuki.Retry{Attempts: 4, Interval: time.Millisecond, Multiplier: 1.5, Jitter: 0.5}
	err := l.WithLock(ctx, "k", func(context.Context) error { return nil }, kannuki.WithStrategy(s))
	if !isReason(err, kannuki.ReasonRetriesExhausted) || b.tries.Load() != 4 {
		t.Fatalf("got %v after %d tries", err, b.tries.Load())
	}
	// The call's timeout bounds the retries.
	b.tries.Store(0)
	slow := kannuki.Retry{Attempts: -1, Interval: 20 * time.Millisecond, Multiplier: 1}
	err = l.WithLock(ctx, "k", func(context.Context) error { return nil }, kannuki.WithStrategy(slow), kannuki.Timeout(70*time.Millisecond))
	if !errors.Is(err, kannuki.ErrNotAcquired) || b.tries.Load() < 2 {
		t.Fatalf("bounded retry: %v after %d tries", err, b.tries.Load())
	}
}

func TestRetryAcquiresWhenFreed(t *testing.T) {
	l, _ := newLocker(kannuki.Options{})
	ctx := context.Background()
	h, _ := l.Acquire(ctx, "k")
	var calls atomic.Int32
	s := kannuki.Retry{Attempts: -1, NewBackoff: func() kannuki.Backoff {
		return backoffFunc(func() (time.Duration, bool) {
			if calls.Add(1) == 2 {
				h.Release(ctx)
			}
			return time.Millisecond, false
		})
	}}
	if err := l.WithLock(ctx, "k", func(context.Context) error { return nil }, kannuki.WithStrategy(s)); err != nil {
		t.Fatal(err)
	}
}

type backoffFunc func() (time.Duration, bool)

func (f backoffFunc) Next() (time.Duration, bool) { return f() }

func TestEventsInOrder(t *testing.T) {
	var mu sync.Mutex
	var kinds []kannuki.EventKind
	var acquired kannuki.Event
	hook := kannuki.HookFunc(func(_ context.Context, e kannuki.Event) {
		mu.Lock()
		defer mu.Unlock()
		kinds = append(kinds, e.Kind)
		if e.Kind == kannuki.EventAcquired {
			acquired = e
		}
	})
	l, _ := newLocker(kannuki.Options{Hook: hook, KeyPrefix: "p"})
	ctx := context.Background()
	_ = l.WithLock(ctx, "k", func(ctx context.Context) error {
		_, _ = l.TryLock(context.Background(), "k", func(context.Context) error { return nil })
		return nil
	})
	want := []kannuki.EventKind{kannuki.EventAttempt, kannuki.EventAcquired, kannuki.EventAttempt, kannuki.EventNotAcquired, kannuki.EventReleased}
	if len(kinds) != len(want) {
		t.Fatalf("events %v, want %v", kinds, want)
	}
	for i := range want {
		if kinds[i] != want[i] {
			t.Fatalf("events %v, want %v", kinds, want)
		}
	}
	if acquired.Key != "p/k" || acquired.Mode != store.ModeExclusive {
		t.Fatalf("acquired event %+v", acquired)
	}
}

func TestSlogHook(t *testing.T) {
	var buf bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	l, b := newLocker(kannuki.Options{Logger: logger, KeepaliveInterval: 5 * time.Millisecond})
	_ = l.WithLock(context.Background(), "order/1", func(ctx context.Context) error {
		b.failChk.Store(true)
		<-ctx.Done()
		return nil
	})
	out := buf.String()
	for _, want := range []string{"kannuki: acquired", "key=order/1", "level=WARN msg=\"kannuki: lost\""} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %q:\n%s", want, out)
		}
	}
}

// exhausted is a backend whose pool has no free connection.
type exhausted struct{ *chanBackend }

func (exhausted) Acquire(context.Context, store.Key, store.Request) (store.Lease, error) {
	return nil, kannuki.ErrPoolExhausted
}

func TestPoolExhaustedIsNotHeld(t *testing.T) {
	l := kannuki.New(exhausted{newChanBackend()}, kannuki.Options{})
	ok, err := l.TryLock(context.Background(), "k", func(context.Context) error { return nil })
	if ok || !isReason(err, kannuki.ReasonPoolExhausted) || !errors.Is(err, kannuki.ErrPoolExhausted) {
		t.Fatalf("TryLock = %v, %v; want false and an ErrPoolExhausted error", ok, err)
	}
}
