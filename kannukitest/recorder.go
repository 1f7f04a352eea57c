package kannukitest

import (
	"context"
	"fmt"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/kannuki-go/kannuki/store"

	"github.com/kannuki-go/kannuki/kannukimem"
)

// recorder is the Backend under a test's Locker: the memory backend, plus
// a count of grants per key (AssertAcquired) and the set of leases not yet
// released (the leak check).
type recorder struct {
	mem *kannukimem.Backend

	mu          sync.Mutex
	grants      map[string]int
	outstanding map[*recordedLease]struct{}
}

var (
	_ store.Backend = (*recorder)(nil)
	_ store.Lister  = (*recorder)(nil)
)

func newRecorder(mem *kannukimem.Backend) *recorder {
	return &recorder{mem: mem, grants: map[string]int{}, outstanding: map[*recordedLease]struct{}{}}
}

func (r *recorder) Acquire(ctx context.Context, key store.Key, req store.Request) (store.Lease, error) {
	lease, err := r.mem.Acquire(ctx, key, req)
	if err != nil {
		return nil, err
	}
	rl := &recordedLease{Lease: lease, r: r, key: key.String, mode: req.Mode, since: time.Now(), at: callerOutside()}
	r.mu.Lock()
	r.grants[key.String]++
	r.outstanding[rl] = struct{}{}
	r.mu.Unlock()
	return rl, nil
}

func (r *recorder) Held(ctx context.Context, key store.Key) (bool, error) {
	return r.mem.Held(ctx, key)
}

func (r *recorder) Locks(ctx context.Context) ([]store.LockInfo, error) {
	return r.mem.Locks(ctx)
}

func (r *recorder) acquired(key string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.grants[key]
}

// summary lists the keys that were acquired, for a failed AssertAcquired
// (a wrong prefix or a typo shows at once).
func (r *recorder) summary() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.grants) == 0 {
		return " (no lock was acquired through this Locker)"
	}
	keys := make([]string, 0, len(r.grants))
	for k := range r.grants {
		keys = append(keys, fmt.Sprintf("%q", k))
	}
	sort.Strings(keys)
	if len(keys) > 10 {
		keys = append(keys[:10], "...")
	}
	return " (acquired: " + strings.Join(keys, ", ") + "; keys include the Locker's prefix)"
}

// takeOutstanding returns and forgets the leases not yet released.
func (r *recorder) takeOutstanding() []*recordedLease {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]*recordedLease, 0, len(r.outstanding))
	for rl := range r.outstanding {
		out = append(out, rl)
	}
	clear(r.outstanding)
	return out
}

// recordedLease leaves the outstanding set on Release.
type recordedLease struct {
	store.Lease
	r     *recorder
	key   string
	mode  store.Mode
	since time.Time
	at    string // file:line of the call that took it, for the leak report
}

func (rl *recordedLease) Release(ctx context.Context) error {
	rl.r.mu.Lock()
	delete(rl.r.outstanding, rl)
	rl.r.mu.Unlock()
	return rl.Lease.Release(ctx)
}

// Check forwards the keepalive to the memory lease.
func (rl *recordedLease) Check(ctx context.Context) error {
	if c, ok := rl.Lease.(store.Checker); ok {
		return c.Check(ctx)
	}
	return nil
}

func (rl *recordedLease) describe() string {
	if rl.at == "" {
		return fmt.Sprintf("%q (%s)", rl.key, rl.mode)
	}
	return fmt.Sprintf("%q (%s, taken at %s)", rl.key, rl.mode, rl.at)
}

// callerOutside returns file:line of the first caller outside Kannuki's
// own packages (test files count as outside): the line of the test or the
// code under test that took the lock. A leak reported at the end of the
// test then points at it, not at the cleanup.
func callerOutside() string {
	var pcs [32]uintptr
	frames := runtime.CallersFrames(pcs[:runtime.Callers(3, pcs[:])])
	for {
		f, more := frames.Next()
		if !strings.HasPrefix(f.Function, "github.com/kannuki-go/kannuki") || strings.HasSuffix(f.File, "_test.go") {
			return filepath.Base(f.File) + ":" + strconv.Itoa(f.Line)
		}
		if !more {
			return ""
		}
	}
}
