package kannukimem

import (
	"context"
	"errors"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kannuki-go/kannuki/keys"
	"github.com/kannuki-go/kannuki/store"

	"go.uber.org/goleak"

	"github.com/kannuki-go/kannuki"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// hangGuard only turns a hang into a failure; it is never a timing assertion.
const hangGuard = 10 * time.Second

func key(t testing.TB, name string) store.Key {
	t.Helper()
	k, err := keys.Ruby{}.Derive("", t.Name()+"/"+name)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func excl(wait time.Duration) store.Request {
	return store.Request{Mode: store.ModeExclusive, Wait: wait}
}

func shared(wait time.Duration) store.Request {
	return store.Request{Mode: store.ModeShared, Wait: wait}
}

func mustAcquire(t testing.TB, b *Backend, k store.Key, req store.Request) store.Lease {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), hangGuard)
	defer cancel()
	l, err := b.Acquire(ctx, k, req)
	if err != nil {
		t.Fatalf("Acquire(%q, %+v): %v", k.String, req, err)
	}
	return l
}

func mustRelease(t testing.TB, l store.Lease) {
	t.Helper()
	if err := l.Release(context.Background()); err != nil {
		t.Fatalf("Release: %v", err)
	}
}

// async runs an Acquire in a goroutine and delivers its outcome.
type result struct {
	l   store.Lease
	err error
}

func async(ctx context.Context, b *Backend, k store.Key, req store.Request) <-chan result {
	ch := make(chan result, 1)
	go func() {
		l, err := b.Acquire(ctx, k, req)
		ch <- result{l, err}
	}()
	return ch
}

func await(t testing.TB, ch <-chan result) result {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(hangGuard):
		t.Fatal("Acquire did not return")
		return result{}
	}
}

// pending fails the test if ch delivers within a short settle time. A slow
// machine can only make this miss a bug, never fail a correct backend.
func pending(t testing.TB, ch <-chan result, what string) {
	t.Helper()
	select {
	case r := <-ch:
		t.Fatalf("%s: Acquire returned (err %v) while it should wait", what, r.err)
	case <-time.After(50 * time.Millisecond):
	}
}

// waitQueued polls (with a deadline) until n requests wait on k.
func waitQueued(t testing.TB, b *Backend, k store.Key, n int) {
	t.Helper()
	deadline := time.Now().Add(hangGuard)
	for time.Now().Before(deadline) {
		b.mu.Lock()
		got := 0
		if e, ok := b.locks[k.String]; ok {
			got = e.waiters.Len()
		}
		b.mu.Unlock()
		if got == n {
			return
		}
		time.Sleep(time.Millisecond)
	}
	t.Fatalf("never saw %d waiters on %q", n, k.String)
}

func empty(t testing.TB, b *Backend) {
	t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.locks) != 0 {
		for k, e := range b.locks {
			t.Errorf("key %q still has %d holders and %d waiters", k, len(e.holders), e.waiters.Len())
		}
	}
}

func TestExclusionManyGoroutines(t *testing.T) {
	b := New()
	k := key(t, "counter")
	const goroutines, cycles = 32, 300
	var inside atomic.Int32
	counter := 0 // updated without atomics: -race and the final count catch overlap
	var wg sync.WaitGroup
	for range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range cycles {
				l, err := b.Acquire(context.Background(), k, excl(store.WaitForever))
				if err != nil {
					t.Error(err)
					return
				}
				if n := inside.Add(1); n != 1 {
					t.Errorf("%d holders at once", n)
				}
				v := counter
				if rand.IntN(8) == 0 {
					time.Sleep(time.Microsecond) // widen the window a writer race would need
				}
				counter = v + 1
				inside.Add(-1)
				if err := l.Release(context.Background()); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	if counter != goroutines*cycles {
		t.Fatalf("counter %d, want %d: holders overlapped", counter, goroutines*cycles)
	}
	empty(t, b)
}

func TestTryAndHeld(t *testing.T) {
	b := New()
	ctx := context.Background()
	k := key(t, "k")
	if held, _ := b.Held(ctx, k); held {
		t.Fatal("Held before any lock")
	}
	l := mustAcquire(t, b, k, excl(0))
	if held, _ := b.Held(ctx, k); !held {
		t.Fatal("not Held while held")
	}
	_, err := b.Acquire(ctx, k, excl(0))
	if !errors.Is(err, store.ErrNotAcquired) {
		t.Fatalf("try on held key: %v, want ErrNotAcquired", err)
	}
	if _, err := b.Acquire(ctx, k, shared(0)); !errors.Is(err, store.ErrNotAcquired) {
		t.Fatalf("shared try on exclusively held key: %v", err)
	}
	// Another key is independent.
	mustRelease(t, mustAcquire(t, b, key(t, "other"), excl(0)))
	mustRelease(t, l)
	if err := l.Release(ctx); !errors.Is(err, store.ErrReleased) {
		t.Fatalf("second Release: %v, want ErrReleased", err)
	}
	if held, _ := b.Held(ctx, k); held {
		t.Fatal("Held after release")
	}
	empty(t, b)
}

func TestTimeoutNotSooner(t *testing.T) {
	b := New()
	k := key(t, "k")
	l := mustAcquire(t, b, k, excl(0))
	defer mustRelease(t, l)
	const d = 150 * time.Millisecond
	start := time.Now()
	_, err := b.Acquire(context.Background(), k, excl(d))
	waited := time.Since(start)
	if !errors.Is(err, store.ErrNotAcquired) {
		t.Fatalf("timed wait: %v, want ErrNotAcquired", err)
	}
	if waited < d {
		t.Fatalf("gave up after %v, sooner than %v", waited, d)
	}
	if waited > d+hangGuard {
		t.Fatalf("gave up after %v", waited)
	}
}

func TestContextEndsWait(t *testing.T) {
	b := New()
	k := key(t, "k")
	l := mustAcquire(t, b, k, excl(0))

	ctx, cancel := context.WithCancel(context.Background())
	ch := async(ctx, b, k, excl(store.WaitForever))
	waitQueued(t, b, k, 1)
	cancel()
	r := await(t, ch)
	if !errors.Is(r.err, context.Canceled) {
		t.Fatalf("canceled wait: %v, want context.Canceled and ErrNotAcquired", r.err)
	}

	dctx, dcancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer dcancel()
	_, err := b.Acquire(dctx, k, excl(time.Hour))
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("deadline wait: %v, want context.DeadlineExceeded", err)
	}

	// An already ended context fails at once, even on a free key.
	mustRelease(t, l)
	if _, err := b.Acquire(ctx, k, excl(0)); !errors.Is(err, context.Canceled) {
		t.Fatalf("Acquire with canceled ctx: %v", err)
	}
	empty(t, b)
}

func TestHandoffFIFO(t *testing.T) {
	b := New()
	ctx := context.Background()
	k := key(t, "k")
	l := mustAcquire(t, b, k, excl(0))
	var chans []<-chan result
	for i := range 5 {
		chans = append(chans, async(ctx, b, k, excl(store.WaitForever)))
		waitQueued(t, b, k, i+1)
	}
	mustRelease(t, l)
	for i, ch := range chans {
		r := await(t, ch)
		if r.err != nil {
			t.Fatalf("waiter %d: %v", i, r.err)
		}
		for _, later := range chans[i+1:] {
			select {
			case r := <-later:
				t.Fatalf("a later waiter was granted before waiter %d (err %v)", i, r.err)
			default:
			}
		}
		mustRelease(t, r.l)
	}
	empty(t, b)
}

func TestSharedSemantics(t *testing.T) {
	b := New()
	ctx := context.Background()
	k := key(t, "k")

	r1 := mustAcquire(t, b, k, shared(0))
	r2 := mustAcquire(t, b, k, shared(0))
	if _, err := b.Acquire(ctx, k, excl(0)); !errors.Is(err, store.ErrNotAcquired) {
		t.Fatalf("exclusive try while shared held: %v", err)
	}
	// A waiting writer blocks readers that come after it.
	w := async(ctx, b, k, excl(store.WaitForever))
	waitQueued(t, b, k, 1)
	if _, err := b.Acquire(ctx, k, shared(0)); !errors.Is(err, store.ErrNotAcquired) {
		t.Fatalf("shared try behind a waiting writer: %v", err)
	}
	r3 := async(ctx, b, k, shared(store.WaitForever))
	waitQueued(t, b, k, 2)
	mustRelease(t, r1)
	pending(t, w, "writer while one reader holds")
	mustRelease(t, r2)
	wl := await(t, w)
	if wl.err != nil {
		t.Fatal(wl.err)
	}
	pending(t, r3, "reader while the writer holds")
	mustRelease(t, wl.l)
	rl := await(t, r3)
	if rl.err != nil {
		t.Fatal(rl.err)
	}
	mustRelease(t, rl.l)
	empty(t, b)
}

// A reader run behind the front is granted together; a writer leaving the
// front of the queue lets the readers behind it in.
func TestWriterGivingUpAdmitsReaders(t *testing.T) {
	b := New()
	ctx := context.Background()
	k := key(t, "k")
	r1 := mustAcquire(t, b, k, shared(0))
	wctx, wcancel := context.WithCancel(ctx)
	w := async(wctx, b, k, excl(store.WaitForever))
	waitQueued(t, b, k, 1)
	ra := async(ctx, b, k, shared(store.WaitForever))
	rb := async(ctx, b, k, shared(store.WaitForever))
	waitQueued(t, b, k, 3)
	wcancel()
	if r := await(t, w); !errors.Is(r.err, context.Canceled) {
		t.Fatalf("writer: %v", r.err)
	}
	for _, ch := range []<-chan result{ra, rb} {
		r := await(t, ch)
		if r.err != nil {
			t.Fatal(r.err)
		}
		mustRelease(t, r.l)
	}
	mustRelease(t, r1)
	empty(t, b)
}

// Readers arriving continuously do not starve a writer.
func TestNoWriterStarvation(t *testing.T) {
	b := New()
	k := key(t, "k")
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				l := mustAcquire(t, b, k, shared(store.WaitForever))
				time.Sleep(100 * time.Microsecond)
				mustRelease(t, l)
			}
		}()
	}
	for range 20 {
		mustRelease(t, mustAcquire(t, b, k, excl(store.WaitForever)))
	}
	close(stop)
	wg.Wait()
	empty(t, b)
}

// Random cancellations and timeouts never leave anything held or queued.
func TestRandomCancelLeavesNothing(t *testing.T) {
	b := New()
	k := key(t, "k")
	var wg sync.WaitGroup
	var holders atomic.Int32
	for g := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 200 {
				ctx, cancel := context.WithCancel(context.Background())
				if (g+i)%2 == 0 {
					go func() {
						time.Sleep(time.Duration(rand.IntN(200)) * time.Microsecond)
						cancel()
					}()
				}
				req := excl(time.Duration(rand.IntN(300)) * time.Microsecond)
				if i%5 == 0 {
					req.Mode = store.ModeShared
				}
				l, err := b.Acquire(ctx, k, req)
				if err == nil {
					if req.Mode == store.ModeExclusive && holders.Add(1) != 1 {
						t.Error("two exclusive holders")
					}
					time.Sleep(time.Duration(rand.IntN(50)) * time.Microsecond)
					if req.Mode == store.ModeExclusive {
						holders.Add(-1)
					}
					mustRelease(t, l)
				} else if !errors.Is(err, store.ErrNotAcquired) && ctx.Err() == nil {
					t.Errorf("Acquire: %v", err)
				}
				cancel()
			}
		}()
	}
	wg.Wait()
	empty(t, b)
}

func TestSimulateHeld(t *testing.T) {
	b := New()
	ctx := context.Background()
	k := key(t, "k")
	release, err := b.SimulateHeld(k, store.ModeExclusive)
	if err != nil {
		t.Fatal(err)
	}
	if held, _ := b.Held(ctx, k); !held {
		t.Fatal("simulated hold not Held")
	}
	if _, err := b.Acquire(ctx, k, excl(0)); !errors.Is(err, store.ErrNotAcquired) {
		t.Fatalf("try on simulated hold: %v", err)
	}
	if _, err := b.SimulateHeld(k, store.ModeShared); !errors.Is(err, store.ErrNotAcquired) {
		t.Fatalf("second conflicting simulation: %v", err)
	}
	w := async(ctx, b, k, excl(store.WaitForever))
	pending(t, w, "waiter on a simulated hold")
	release()
	release() // idempotent
	r := await(t, w)
	if r.err != nil {
		t.Fatal(r.err)
	}
	if _, err := b.SimulateHeld(k, store.ModeExclusive); !errors.Is(err, store.ErrNotAcquired) {
		t.Fatalf("simulation over a real holder: %v", err)
	}
	mustRelease(t, r.l)

	// Shared simulations admit shared requests.
	rel, err := b.SimulateHeld(k, store.ModeShared)
	if err != nil {
		t.Fatal(err)
	}
	mustRelease(t, mustAcquire(t, b, k, shared(0)))
	if _, err := b.Acquire(ctx, k, excl(0)); !errors.Is(err, store.ErrNotAcquired) {
		t.Fatalf("exclusive try on shared simulation: %v", err)
	}
	rel()
	if _, err := b.SimulateHeld(k, 9); !errors.Is(err, store.ErrInvalidArgument) {
		t.Fatalf("bad mode: %v", err)
	}
	empty(t, b)
}

func TestLose(t *testing.T) {
	b := New()
	ctx := context.Background()
	k := key(t, "k")
	l := mustAcquire(t, b, k, excl(0))
	if err := l.(store.Checker).Check(ctx); err != nil {
		t.Fatalf("Check while held: %v", err)
	}
	w := async(ctx, b, k, excl(store.WaitForever))
	waitQueued(t, b, k, 1)
	if n := b.Lose(k); n != 1 {
		t.Fatalf("Lose took %d leases, want 1", n)
	}
	r := await(t, w) // the lock is free for others, as after a killed session
	if r.err != nil {
		t.Fatal(r.err)
	}
	if err := l.(store.Checker).Check(ctx); !errors.Is(err, store.ErrLockLost) {
		t.Fatalf("Check after Lose: %v", err)
	}
	if err := l.Release(ctx); !errors.Is(err, store.ErrLockLost) {
		t.Fatalf("Release after Lose: %v", err)
	}
	mustRelease(t, r.l)
	if n := b.Lose(k); n != 0 {
		t.Fatalf("Lose on a free key took %d", n)
	}
	empty(t, b)
}

func TestLockerReportsLoss(t *testing.T) {
	b := New()
	l := kannuki.New(b, kannuki.Options{KeepaliveInterval: 10 * time.Millisecond})
	name := t.Name() + "/k"
	k, err := l.Key(name)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), hangGuard)
	defer cancel()
	err = l.WithLock(ctx, name, func(ctx context.Context) error {
		b.Lose(k)
		<-ctx.Done()
		return ctx.Err()
	})
	if !errors.Is(err, store.ErrLockLost) {
		t.Fatalf("WithLock after Lose: %v, want ErrLockLost", err)
	}
	empty(t, b)
}

func TestLocks(t *testing.T) {
	b := New()
	ctx := context.Background()
	k := key(t, "a")
	l := mustAcquire(t, b, k, shared(0))
	rel, err := b.SimulateHeld(k, store.ModeShared)
	if err != nil {
		t.Fatal(err)
	}
	wctx, wcancel := context.WithCancel(ctx)
	w := async(wctx, b, k, excl(store.WaitForever))
	waitQueued(t, b, k, 1)
	infos, err := b.Locks(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var granted, waiting, simulated int
	for _, in := range infos {
		if in.Name != k.String {
			t.Errorf("unexpected lock %+v", in)
		}
		if in.Granted {
			granted++
		} else {
			waiting++
		}
		if in.Application == "kannukimem (simulated)" {
			simulated++
		}
	}
	if granted != 2 || waiting != 1 || simulated != 1 {
		t.Fatalf("Locks = %+v; want 2 granted (1 simulated), 1 waiting", infos)
	}
	wcancel()
	await(t, w)
	rel()
	mustRelease(t, l)
	if infos, _ := b.Locks(ctx); len(infos) != 0 {
		t.Fatalf("Locks after release: %+v", infos)
	}
}

func TestBadMode(t *testing.T) {
	b := New()
	if _, err := b.Acquire(context.Background(), key(t, "k"), store.Request{Mode: 7}); !errors.Is(err, store.ErrInvalidArgument) {
		t.Fatalf("bad mode: %v", err)
	}
	empty(t, b)
}

// Keys are opaque strings: odd ones lock like any other, and two Keys with
// the same String are one lock.
func TestOddKeys(t *testing.T) {
	b := New()
	for _, s := range []string{"", "\x00", "../../etc/passwd", string(make([]byte, 1<<20))} {
		k := store.Key{String: s}
		l := mustAcquire(t, b, k, excl(0))
		if _, err := b.Acquire(context.Background(), store.Key{String: s, ID: 42}, excl(0)); !errors.Is(err, store.ErrNotAcquired) {
			t.Fatalf("same String, other ID: %v", err)
		}
		mustRelease(t, l)
	}
	empty(t, b)
}
