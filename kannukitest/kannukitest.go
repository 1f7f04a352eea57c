// Package kannukitest helps test code that takes Kannuki locks, without a
// database: a Locker on a fresh in-process backend (package kannukimem)
// bound to one test, simulated holders, assertions, and a check at the end
// of the test that every lock was released.
//
//	func TestProcessOrder(t *testing.T) {
//		t.Parallel() // each test has its own backend: no shared state
//		l := kannukitest.New(t)
//		release := l.SimulateHeld("order_processing/123") // "another process" has it
//		ok, err := l.TryLock(ctx, "order_processing/123", process)
//		// ok == false, err == nil
//		release()
//		l.AssertNotHeld("order_processing/123")
//	}
//
// Unlike the Ruby gem's test mode, the locks are real: two goroutines of
// the test never hold one key exclusively at once, so concurrency bugs
// show up under `go test -race`.
package kannukitest

import (
	"context"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kannuki-go/kannuki/global"
	"github.com/kannuki-go/kannuki/store"

	"github.com/kannuki-go/kannuki"
	"github.com/kannuki-go/kannuki/kannukimem"
)

// DefaultKeepaliveInterval is the Locker's keepalive interval in tests,
// unless the options set one: short, so a loss made with Lose is seen
// quickly.
const DefaultKeepaliveInterval = 20 * time.Millisecond

// assertTimeout bounds the backend calls of assertions; the memory backend
// answers at once, so it only matters for a deadlocked test.
const assertTimeout = 10 * time.Second

// Locker is a *kannuki.Locker on a fresh in-process backend, bound to one
// test. Pass l.Locker to the code under test; use the methods below in the
// test. All methods are safe for concurrent use.
type Locker struct {
	*kannuki.Locker

	t   testing.TB
	mem *kannukimem.Backend
	rec *recorder

	mu        sync.Mutex
	simulated []func()
}

// Option adjusts New.
type Option func(*config)

type config struct {
	opts      kannuki.Options
	leakCheck bool
	asDefault bool
}

// WithOptions sets the Locker's options (key prefix, key scheme, default
// timeout, strategy, hook, ...). A zero KeepaliveInterval becomes
// DefaultKeepaliveInterval.
func WithOptions(o kannuki.Options) Option {
	return func(c *config) { c.opts = o }
}

// WithoutLeakCheck turns off the end-of-test check that every lock was
// released (for a test that hands a lock to code outliving it).
func WithoutLeakCheck() Option {
	return func(c *config) { c.leakCheck = false }
}

// AsDefault makes the Locker the process-wide one (global.SetDefault) for
// the test, and puts the previous one back when the test ends, for code
// under test that uses the global package. The default is one per process:
// tests that use AsDefault must not run in parallel with each other.
func AsDefault() Option {
	return func(c *config) { c.asDefault = true }
}

// New returns a Locker on a fresh in-process backend. When the test ends
// (t.Cleanup) it fails the test if a lock taken through it is still held
// (simulated holds do not count), then releases everything, simulated
// holds included.
func New(t testing.TB, opts ...Option) *Locker {
	t.Helper()
	c := config{leakCheck: true}
	for _, o := range opts {
		if o != nil {
			o(&c)
		}
	}
	if c.opts.KeepaliveInterval == 0 {
		c.opts.KeepaliveInterval = DefaultKeepaliveInterval
	}
	mem := kannukimem.New()
	rec := newRecorder(mem)
	l := &Locker{Locker: kannuki.New(rec, c.opts), t: t, mem: mem, rec: rec}
	t.Cleanup(func() { l.cleanup(c.leakCheck) })
	if c.asDefault {
		prev := global.Default()
		global.SetDefault(l.Locker)
		t.Cleanup(func() { global.SetDefault(prev) })
	}
	return l
}

// Mem returns the in-process backend under the Locker, for what the
// helpers here do not cover (shared simulated holds, Locks).
func (l *Locker) Mem() *kannukimem.Backend { return l.mem }

// SimulateHeld makes key held exclusively by "someone else" (another
// process, in the test's story): TryLock returns false, waits wait, Held
// is true, until the returned release function is called or the test
// ends. It fails the test when key is already held or awaited.
func (l *Locker) SimulateHeld(key string) (release func()) {
	l.t.Helper()
	return l.simulate(key, store.ModeExclusive)
}

// SimulateHeldShared is SimulateHeld with a shared hold: shared requests
// still succeed, exclusive ones do not.
func (l *Locker) SimulateHeldShared(key string) (release func()) {
	l.t.Helper()
	return l.simulate(key, store.ModeShared)
}

func (l *Locker) simulate(key string, mode store.Mode) func() {
	l.t.Helper()
	k := l.key(key)
	release, err := l.mem.SimulateHeld(k, mode)
	if err != nil {
		l.t.Fatalf("kannukitest: SimulateHeld(%q): %v", key, err)
	}
	l.mu.Lock()
	l.simulated = append(l.simulated, release)
	l.mu.Unlock()
	return release
}

// Lose takes key away from its holders through this Locker, as a database
// does when the holding session is killed: the lock becomes free, and
// within the keepalive interval the holder's fn context is canceled and
// its call returns an error matching kannuki.ErrLockLost. It returns the
// number of holders that lost the lock.
func (l *Locker) Lose(key string) int {
	l.t.Helper()
	return l.mem.Lose(l.key(key))
}

// AcquireCount returns how many times key was granted through this Locker
// (re-entrant nested calls, which take no new lock, are not counted).
func (l *Locker) AcquireCount(key string) int {
	l.t.Helper()
	return l.rec.acquired(l.key(key).String)
}

// AssertAcquired fails the test unless key was acquired at least once
// through this Locker.
func (l *Locker) AssertAcquired(key string) {
	l.t.Helper()
	if l.AcquireCount(key) == 0 {
		l.t.Errorf("kannukitest: lock %q was never acquired%s", key, l.rec.summary())
	}
}

// AssertNotAcquired fails the test if key was acquired through this
// Locker (for code that must skip the work when the lock is held).
func (l *Locker) AssertNotAcquired(key string) {
	l.t.Helper()
	if n := l.AcquireCount(key); n != 0 {
		l.t.Errorf("kannukitest: lock %q was acquired %d times, want none", key, n)
	}
}

// AssertHeld fails the test unless key is held now (by a holder through
// this Locker or a simulated one).
func (l *Locker) AssertHeld(key string) {
	l.t.Helper()
	if !l.held(key) {
		l.t.Errorf("kannukitest: lock %q is not held", key)
	}
}

// AssertNotHeld fails the test if key is held now.
func (l *Locker) AssertNotHeld(key string) {
	l.t.Helper()
	if l.held(key) {
		l.t.Errorf("kannukitest: lock %q is held", key)
	}
}

func (l *Locker) held(key string) bool {
	l.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), assertTimeout)
	defer cancel()
	held, err := l.Locker.Held(ctx, key)
	if err != nil {
		l.t.Fatalf("kannukitest: Held(%q): %v", key, err)
	}
	return held
}

// key derives key as the Locker does (prefix and scheme).
func (l *Locker) key(key string) store.Key {
	l.t.Helper()
	k, err := l.Locker.Key(key)
	if err != nil {
		l.t.Fatalf("kannukitest: %v", err)
	}
	return k
}

// cleanup runs when the test ends: the leak check, then releasing what
// is left so nothing outlives the test.
func (l *Locker) cleanup(leakCheck bool) {
	leaked := l.rec.takeOutstanding()
	if leakCheck && len(leaked) > 0 {
		names := make([]string, 0, len(leaked))
		for _, le := range leaked {
			names = append(names, le.describe())
		}
		sort.Strings(names)
		l.t.Errorf("kannukitest: %d lock(s) still held at the end of the test (a missing Release, or fn still running): %s",
			len(leaked), strings.Join(names, ", "))
	}
	for _, le := range leaked {
		_ = le.Lease.Release(context.Background())
	}
	l.mu.Lock()
	simulated := l.simulated
	l.simulated = nil
	l.mu.Unlock()
	for _, release := range simulated {
		release()
	}
}
