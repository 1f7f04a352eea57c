package backendtest

import (
	"sync"
	"testing"

	"github.com/kannuki-go/kannuki/store"
)

// Harness describes the backend under test to Run.
type Harness struct {
	// New returns a fresh Backend: a new "client" with its own pool or
	// session, sharing the lock store with every other Backend New returns
	// (for an in-process store such as the memory backend, New may return
	// the same instance every time). Run calls it several times per case.
	// Register cleanup (closing the pool) with t.Cleanup; call t.Skip or
	// t.Fatal when the store is unreachable.
	//
	// Pools: the exclusion cases run 16 goroutines per client, 3 clients
	// (or processes) at once, mixing waits forever, bounded waits of a few
	// milliseconds and single tries; any error other than ErrNotAcquired
	// fails them. A backend that waits for a free pooled connection within
	// the request's budget works with small pools (8 connections). One
	// that gives up on an exhausted pool sooner or with another error needs
	// a pool of about 20 connections per client, or a longer connection
	// wait. PostgreSQL admits 100 connections by default, shared with
	// whatever else runs.
	New func(t testing.TB) store.Backend

	// Shared is true when the backend supports ModeShared. When false the
	// suite checks that shared requests fail with ErrUnsupported.
	Shared bool

	// KillHolder ends the store session holding key behind the holder's
	// back (pg_terminate_backend, MySQL KILL, a forced loss in the memory
	// backend). The lock-loss cases use it with a Locker whose keepalive
	// runs every 100 ms; nil skips them.
	KillHolder func(t testing.TB, key store.Key)

	// HeldOnServer reports whether key is held in the store, seen from a
	// session that holds no lock of the suite's (a "third session"). nil
	// means Held on a Backend from New, one per subtest. Call t.Fatal on
	// errors.
	HeldOnServer func(t testing.TB, key store.Key) bool

	// MultiProcess is true when the store is shared by OS processes
	// (databases, lock files). It enables the cross-process exclusion and
	// the SIGKILL crash cases, which re-execute the test binary.
	MultiProcess bool

	// Cycles is the total number of lock cycles of each exclusion case
	// (in-process and cross-process). 0 means 2,000, or 300 with -short.
	Cycles int

	// Trials is the number of randomly cancelled acquisitions, and again
	// of timed-out waits, in the leak case. 0 means 200, or 50 with -short.
	Trials int
}

// Defaults of the Harness counts.
const (
	defaultCycles      = 2000
	defaultShortCycles = 300
	defaultTrials      = 200
	defaultShortTrials = 50
)

// runs remembers the tests that called Run.
var runs sync.Map // *testing.T -> bool

// suite is one Run: the harness with its defaults filled in.
type suite struct {
	h Harness
	// runName is the name of the test that called Run, for re-executing it.
	runName string

	obsMu sync.Mutex
	obs   map[testing.TB]store.Backend // observer backends, one per subtest
}

func newSuite(t *testing.T, h Harness) *suite {
	if h.Cycles <= 0 {
		h.Cycles = defaultCycles
		if testing.Short() {
			h.Cycles = defaultShortCycles
		}
	}
	if h.Trials <= 0 {
		h.Trials = defaultTrials
		if testing.Short() {
			h.Trials = defaultShortTrials
		}
	}
	return &suite{h: h, runName: t.Name(), obs: map[testing.TB]store.Backend{}}
}

// Run runs the conformance suite against the backend h describes, one
// subtest per case. Call it from a test function of its own: in the child
// processes of the cross-process cases Run plays the child's role only and
// then ends that test without returning (see the package documentation).
func Run(t *testing.T, h Harness) {
	t.Helper()
	if h.New == nil {
		t.Fatal("backendtest: Harness.New is nil")
	}
	if spec, ok := childSpecFromEnv(); ok {
		runChild(t, h, spec)
		return
	}
	if _, dup := runs.LoadOrStore(t, true); dup {
		// The children re-execute the test by name and could not tell
		// two suites in one test apart.
		t.Fatal("backendtest: Run called twice in one test; give each harness a subtest of its own (t.Run)")
	}
	t.Cleanup(func() { runs.Delete(t) })
	s := newSuite(t, h)
	before := goroutineStacks()

	t.Run("Exclusion", s.testExclusion)
	t.Run("Try", s.testTry)
	t.Run("Timeout", s.testTimeout)
	t.Run("Cancel", s.testCancel)
	t.Run("Deadline", s.testDeadline)
	t.Run("Handoff", s.testHandoff)
	t.Run("Release", s.testRelease)
	t.Run("Relock", s.testRelock)
	t.Run("Shared", s.testShared)
	t.Run("Crash", s.testCrash)
	t.Run("LockLoss", s.testLockLoss)
	t.Run("NoLeakedLocks", s.testNoLeakedLocks)
	t.Run("Keys", s.testKeys)
	t.Run("Messages", s.testMessages)
	t.Run("Locker", s.testLocker)
	t.Run("NoLeakedGoroutines", func(t *testing.T) { checkGoroutines(t, before) })
}

// heldOnServer asks the third session whether key is held.
func (s *suite) heldOnServer(t testing.TB, key store.Key) bool {
	t.Helper()
	if s.h.HeldOnServer != nil {
		return s.h.HeldOnServer(t, key)
	}
	ctx, cancel := guardCtx()
	defer cancel()
	held, err := s.observer(t).Held(ctx, key)
	if err != nil {
		t.Fatalf("Held(%q) from a third session: %v", key.String, err)
	}
	return held
}

// observer returns the per-subtest Backend used as the third session.
func (s *suite) observer(t testing.TB) store.Backend {
	s.obsMu.Lock()
	defer s.obsMu.Unlock()
	if b, ok := s.obs[t]; ok {
		return b
	}
	b := s.h.New(t)
	s.obs[t] = b
	t.Cleanup(func() {
		s.obsMu.Lock()
		delete(s.obs, t)
		s.obsMu.Unlock()
	})
	return b
}
