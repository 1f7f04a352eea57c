package kannukitest

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/kannuki-go/kannuki"
	"github.com/kannuki-go/kannuki/global"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// fakeTB records failures and cleanups instead of acting on them, so a
// test can check that kannukitest fails the tests it should.
type fakeTB struct {
	testing.TB // the real test, for anything not overridden

	mu       sync.Mutex
	errs     []string
	fatal    bool
	cleanups []func()
}

func newFake(t *testing.T) *fakeTB { return &fakeTB{TB: t} }

func (f *fakeTB) Helper() {}

func (f *fakeTB) Errorf(format string, args ...any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.errs = append(f.errs, fmt.Sprintf(format, args...))
}

func (f *fakeTB) Error(args ...any) { f.Errorf("%s", fmt.Sprint(args...)) }

func (f *fakeTB) Fatalf(format string, args ...any) {
	f.Errorf(format, args...)
	f.mu.Lock()
	f.fatal = true
	f.mu.Unlock()
	runtime.Goexit()
}

func (f *fakeTB) Fatal(args ...any) { f.Fatalf("%s", fmt.Sprint(args...)) }

func (f *fakeTB) Failed() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.errs) > 0
}

func (f *fakeTB) Cleanup(fn func()) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.cleanups = append(f.cleanups, fn)
}

// run runs body as a test would (on its own goroutine, so Fatalf can end
// it), then the cleanups in reverse order, and returns the failures.
func (f *fakeTB) run(body func(tb testing.TB)) []string {
	done := make(chan struct{})
	go func() {
		defer close(done)
		body(f)
	}()
	<-done
	f.mu.Lock()
	cleanups := f.cleanups
	f.cleanups = nil
	f.mu.Unlock()
	for i := len(cleanups) - 1; i >= 0; i-- {
		cleanups[i]()
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.errs
}

func TestLeakCheckFailsForgottenRelease(t *testing.T) {
	var acquireLine int
	errs := newFake(t).run(func(tb testing.TB) {
		l := New(tb)
		_, _, acquireLine, _ = runtime.Caller(0)
		if _, err := l.Acquire(context.Background(), "report/daily"); err != nil {
			t.Error(err)
		}
		// forgot h.Release
	})
	if len(errs) != 1 || !strings.Contains(errs[0], `"report/daily"`) || !strings.Contains(errs[0], "still held at the end of the test") {
		t.Fatalf("leak check reported %q; want one failure naming the key", errs)
	}
	// The report points at the line that took the lock.
	if want := fmt.Sprintf("taken at kannukitest_test.go:%d", acquireLine+1); !strings.Contains(errs[0], want) {
		t.Fatalf("leak check reported %q; want it to say %q", errs[0], want)
	}
}

func TestAsDefault(t *testing.T) {
	before := global.Default()
	errs := newFake(t).run(func(tb testing.TB) {
		l := New(tb, AsDefault())
		if global.Default() != l.Locker {
			t.Error("AsDefault did not set the default Locker")
		}
		if err := global.WithLock(context.Background(), "k", func(context.Context) error { return nil }); err != nil {
			t.Error(err)
		}
		l.AssertAcquired("k")
	})
	if len(errs) != 0 {
		t.Fatal(errs)
	}
	if global.Default() != before {
		t.Fatal("the default Locker was not put back when the test ended")
	}
}

func TestLeakCheckPassesReleasedAndSimulated(t *testing.T) {
	errs := newFake(t).run(func(tb testing.TB) {
		l := New(tb)
		ctx := context.Background()
		h, err := l.Acquire(ctx, "a")
		if err != nil {
			t.Error(err)
			return
		}
		tb.Cleanup(func() { h.Release(ctx) }) // registered later, so it runs before the check
		l.SimulateHeld("b")                   // never released by the test: not a leak
		if err := l.WithLock(ctx, "c", func(context.Context) error { return nil }); err != nil {
			t.Error(err)
		}
	})
	if len(errs) != 0 {
		t.Fatalf("leak check failed a clean test: %q", errs)
	}
}

func TestWithoutLeakCheck(t *testing.T) {
	errs := newFake(t).run(func(tb testing.TB) {
		l := New(tb, WithoutLeakCheck())
		if _, err := l.Acquire(context.Background(), "k"); err != nil {
			t.Error(err)
		}
	})
	if len(errs) != 0 {
		t.Fatalf("WithoutLeakCheck still failed: %q", errs)
	}
}

// After the test, leftovers are released: the backend ends empty.
func TestCleanupReleasesEverything(t *testing.T) {
	var l *Locker
	newFake(t).run(func(tb testing.TB) {
		l = New(tb)
		l.SimulateHeld("s")
		if _, err := l.Acquire(context.Background(), "k"); err != nil {
			t.Error(err)
		}
	})
	infos, err := l.Mem().Locks(context.Background())
	if err != nil || len(infos) != 0 {
		t.Fatalf("after cleanup: %+v, %v", infos, err)
	}
}

func TestSimulateHeld(t *testing.T) {
	t.Parallel()
	l := New(t)
	ctx := context.Background()
	release := l.SimulateHeld("order_processing/123")
	l.AssertHeld("order_processing/123")
	ok, err := l.TryLock(ctx, "order_processing/123", func(context.Context) error {
		t.Error("fn ran while the lock was held elsewhere")
		return nil
	})
	if ok || err != nil {
		t.Fatalf("TryLock on a simulated hold = %v, %v; want false, nil", ok, err)
	}
	err = l.WithLock(ctx, "order_processing/123", func(context.Context) error { return nil }, kannuki.Timeout(30*time.Millisecond))
	var na *kannuki.NotAcquiredError
	if !errors.As(err, &na) || na.Reason != kannuki.ReasonTimeout {
		t.Fatalf("WithLock with a timeout on a simulated hold: %v", err)
	}
	l.AssertNotAcquired("order_processing/123")

	// A waiter gets the lock once the simulated holder lets go.
	done := make(chan error, 1)
	go func() {
		done <- l.WithLock(ctx, "order_processing/123", func(context.Context) error { return nil })
	}()
	select {
	case err := <-done:
		t.Fatalf("WithLock returned (%v) while the simulated hold lasts", err)
	case <-time.After(30 * time.Millisecond):
	}
	release()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	l.AssertAcquired("order_processing/123")
	l.AssertNotHeld("order_processing/123")
}

func TestSimulateHeldShared(t *testing.T) {
	t.Parallel()
	l := New(t)
	ctx := context.Background()
	l.SimulateHeldShared("cfg")
	if ok, err := l.TryLock(ctx, "cfg", func(context.Context) error { return nil }, kannuki.Shared()); !ok || err != nil {
		t.Fatalf("shared TryLock on a shared simulation: %v, %v", ok, err)
	}
	if ok, err := l.TryLock(ctx, "cfg", func(context.Context) error { return nil }); ok || err != nil {
		t.Fatalf("exclusive TryLock on a shared simulation: %v, %v", ok, err)
	}
}

func TestSimulateHeldOnHeldKeyFails(t *testing.T) {
	errs := newFake(t).run(func(tb testing.TB) {
		l := New(tb)
		l.SimulateHeld("k")
		l.SimulateHeld("k")
		t.Error("SimulateHeld on a held key did not stop the test")
	})
	if len(errs) != 1 || !strings.Contains(errs[0], "SimulateHeld") {
		t.Fatalf("failures %q", errs)
	}
}

func TestAssertionsFail(t *testing.T) {
	errs := newFake(t).run(func(tb testing.TB) {
		l := New(tb, WithOptions(kannuki.Options{KeyPrefix: "app"}))
		if err := l.WithLock(context.Background(), "other", func(context.Context) error { return nil }); err != nil {
			t.Error(err)
		}
		l.AssertHeld("free")
		l.AssertAcquired("never")
		l.SimulateHeld("busy")
		l.AssertNotHeld("busy")
		l.AssertNotAcquired("other")
	})
	want := []string{`lock "free" is not held`, `lock "never" was never acquired (acquired: "app/other"`, `lock "busy" is held`, `lock "other" was acquired 1 times`}
	if len(errs) != len(want) {
		t.Fatalf("failures %q, want %d", errs, len(want))
	}
	for i, w := range want {
		if !strings.Contains(errs[i], w) {
			t.Errorf("failure %d = %q, want it to contain %q", i, errs[i], w)
		}
	}
}

func TestPrefixApplies(t *testing.T) {
	t.Parallel()
	l := New(t, WithOptions(kannuki.Options{KeyPrefix: "myapp"}))
	l.SimulateHeld("job")
	if ok, _ := l.TryLock(context.Background(), "job", func(context.Context) error { return nil }); ok {
		t.Fatal("the simulated hold ignored the prefix")
	}
	if infos, _ := l.Mem().Locks(context.Background()); len(infos) != 1 || infos[0].Name != "myapp/job" {
		t.Fatalf("Locks = %+v", infos)
	}
}

func TestLose(t *testing.T) {
	t.Parallel()
	l := New(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := l.WithLock(ctx, "k", func(ctx context.Context) error {
		if n := l.Lose("k"); n != 1 {
			t.Errorf("Lose = %d", n)
		}
		<-ctx.Done() // canceled at the next keepalive
		return ctx.Err()
	})
	if !errors.Is(err, kannuki.ErrLockLost) {
		t.Fatalf("WithLock after Lose: %v, want ErrLockLost", err)
	}
	l.AssertNotHeld("k")
}

// Parallel tests with the same key names do not see each other.
func TestParallelIsolation(t *testing.T) {
	for i := range 4 {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			t.Parallel()
			l := New(t)
			l.AssertNotHeld("shared-name")
			release := l.SimulateHeld("shared-name")
			time.Sleep(10 * time.Millisecond)
			l.AssertHeld("shared-name")
			release()
		})
	}
}

// The locks are real: goroutines of one test exclude each other.
func TestRealExclusion(t *testing.T) {
	t.Parallel()
	l := New(t)
	var inside atomic.Int32
	counter := 0
	var wg sync.WaitGroup
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 100 {
				err := l.WithLock(context.Background(), "counter", func(context.Context) error {
					if inside.Add(1) != 1 {
						t.Error("two holders at once")
					}
					counter++
					inside.Add(-1)
					return nil
				})
				if err != nil {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	if counter != 1600 || l.AcquireCount("counter") != 1600 {
		t.Fatalf("counter %d, acquired %d; want 1600", counter, l.AcquireCount("counter"))
	}
}
