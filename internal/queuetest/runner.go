package queuetest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Counts is what one child's Runner saw, by item.
type Counts struct {
	// Runs are the runs of the work.
	Runs map[string]int
	// Overlaps are the runs that began while another run of the item, in
	// any process, was in its work: two holders of one lock at once.
	Overlaps map[string]int
	// Skips are the jobs that the guard completed without running the work.
	Skips map[string]int
	// Foreign are the skips during which this process had no other job of
	// the item under way, so that the lock the job found taken was held by
	// another process.
	Foreign map[string]int
	// Errors are the errors the guarded jobs returned.
	Errors []string
}

func (c *Counts) bump(m *map[string]int, item string) {
	if *m == nil {
		*m = map[string]int{}
	}
	(*m)[item]++
}

// Runner does the jobs of one child process and counts what happened.
// Install Around as the outermost middleware, then the kannuki middleware,
// and make Work the jobs' work.
type Runner struct {
	spec Spec
	work time.Duration

	mu sync.Mutex
	// under is the number of jobs of each item inside Around.
	under map[string]int
	// moves counts the entries into and exits from Around, by item: an
	// unchanged count means no other job of the item came or went.
	moves map[string]int
	c     Counts
}

// NewRunner returns the Runner of the child spec, whose work lasts work
// (long enough that duplicates meet). It writes its Counts for the parent
// at the end of t, after the cleanups registered later ran: create it
// before the queue client, so that the client has stopped by then.
func NewRunner(t *testing.T, spec Spec, work time.Duration) *Runner {
	t.Helper()
	r := &Runner{spec: spec, work: work, under: map[string]int{}, moves: map[string]int{}}
	t.Cleanup(func() {
		r.mu.Lock()
		b, err := json.Marshal(r.c)
		r.mu.Unlock()
		if err == nil {
			err = os.WriteFile(countsFile(spec.Dir, spec.Index), b, 0o600)
		}
		if err != nil {
			t.Errorf("queuetest: write counts: %v", err)
		}
	})
	return r
}

// ranKey is the context key of the flag that Work sets for Around.
type ranKey struct{}

// Around is the body of the outermost middleware of a job about item;
// guarded calls the rest of the chain, the kannuki middleware and through
// it Work. A job for which guarded returns nil without calling Work counts
// as skipped.
//
// The process's own lock on item can only be held inside guarded of one
// of its jobs of item, as the middleware releases the lock before it
// returns. So a skip during which no other job of item was
// inside Around, from before it began to after it ended, found the lock
// held by another process: it counts as Foreign.
func (r *Runner) Around(ctx context.Context, item string, guarded func(context.Context) error) error {
	alone, seen := r.enter(item)
	ran := new(atomic.Bool)
	err := guarded(context.WithValue(ctx, ranKey{}, ran))
	r.exit(item, alone, seen, ran.Load(), err)
	return err
}

func (r *Runner) enter(item string) (alone bool, seen int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	alone = r.under[item] == 0
	r.under[item]++
	r.moves[item]++
	return alone, r.moves[item]
}

func (r *Runner) exit(item string, alone bool, seen int, ran bool, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	switch {
	case err != nil:
		r.c.Errors = append(r.c.Errors, fmt.Sprintf("child %d, item %s: %v", r.spec.Index, item, err))
	case !ran:
		r.c.bump(&r.c.Skips, item)
		if alone && r.moves[item] == seen {
			r.c.bump(&r.c.Foreign, item)
		}
	}
	r.under[item]--
	r.moves[item]++
}

// Work is the work of a job about item: it holds item's marker file in
// the shared directory for the work's duration (see mark).
func (r *Runner) Work(ctx context.Context, item string) error {
	if ran, ok := ctx.Value(ranKey{}).(*atomic.Bool); ok {
		ran.Store(true)
	}
	unmark, err := r.mark(item)
	if err != nil {
		return err
	}
	timer := time.NewTimer(r.work)
	select {
	case <-timer.C:
	case <-ctx.Done():
		timer.Stop()
	}
	r.count(&r.c.Runs, item)
	return unmark()
}

// mark creates item's marker file, which unmark removes. It is created
// with O_EXCL, so that a run beginning while another run of item, in any
// process, holds the marker counts as an overlap: such a run still works,
// as the job is not at fault, and leaves the marker to its owner.
func (r *Runner) mark(item string) (unmark func() error, err error) {
	path := filepath.Join(r.spec.Dir, "running-"+item)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		r.count(&r.c.Overlaps, item)
		return func() error { return nil }, nil
	}
	if err != nil {
		return nil, err
	}
	// Who holds the marker, for a reader of a leftover one.
	_, err = fmt.Fprintf(f, "child %d, pid %d\n", r.spec.Index, os.Getpid())
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		_ = os.Remove(path)
		return nil, err
	}
	return func() error { return os.Remove(path) }, nil
}

func (r *Runner) count(m *map[string]int, item string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.c.bump(m, item)
}

// Serve tells the parent that the child's queue client is working, then
// waits until the parent stops the children (it closes the child's
// standard input). After ChildLimit it gives up and fails t.
func (r *Runner) Serve(t *testing.T) {
	t.Helper()
	if err := os.WriteFile(readyFile(r.spec.Dir, r.spec.Index), nil, 0o600); err != nil {
		t.Fatalf("queuetest: %v", err)
	}
	eof := make(chan struct{})
	go func() {
		_, _ = io.Copy(io.Discard, os.Stdin)
		close(eof)
	}()
	timer := time.NewTimer(ChildLimit)
	defer timer.Stop()
	select {
	case <-eof:
	case <-timer.C:
		t.Fatalf("queuetest: child %d not stopped by its parent within %s", r.spec.Index, ChildLimit)
	}
}

// Tally sums the Counts of all children.
type Tally struct {
	Counts
	// RunsBy are the runs of each child, by Index.
	RunsBy []int
}

func (ta *Tally) add(c Counts) {
	for _, m := range []struct{ dst, src *map[string]int }{
		{&ta.Runs, &c.Runs}, {&ta.Overlaps, &c.Overlaps}, {&ta.Skips, &c.Skips}, {&ta.Foreign, &c.Foreign},
	} {
		for item, n := range *m.src {
			if *m.dst == nil {
				*m.dst = map[string]int{}
			}
			(*m.dst)[item] += n
		}
	}
	ta.Errors = append(ta.Errors, c.Errors...)
	ta.RunsBy = append(ta.RunsBy, sum(c.Runs))
}

// Skipped is the number of skips, over all items and children.
func (ta Tally) Skipped() int { return sum(ta.Skips) }

// Check fails t unless the tally shows exclusion across processes, and
// shows it exercised: no overlap and no error; jobs jobs, each run or
// skipped once; every one of items run; runs in more than one process; and
// at least one Foreign skip, a duplicate that gave way to a run in another
// process.
func (ta Tally) Check(t testing.TB, jobs int, items ...string) {
	t.Helper()
	t.Logf("runs %v (by child %v), skips %v (foreign %v), overlaps %v", ta.Runs, ta.RunsBy, ta.Skips, ta.Foreign, ta.Overlaps)
	for _, e := range ta.Errors {
		t.Errorf("job error: %s", e)
	}
	if n := sum(ta.Overlaps); n > 0 {
		t.Errorf("%d runs began while another run of the same item was in progress (by item %v): two holders at once", n, ta.Overlaps)
	}
	if runs, skips := sum(ta.Runs), sum(ta.Skips); runs+skips != jobs {
		t.Errorf("%d runs and %d skips, want %d jobs in all, each once", runs, skips, jobs)
	}
	for _, item := range items {
		if ta.Runs[item] == 0 {
			t.Errorf("item %s never ran", item)
		}
	}
	ran := 0
	for _, n := range ta.RunsBy {
		if n > 0 {
			ran++
		}
	}
	if ran < 2 {
		t.Errorf("runs by child %v: %d process(es) ran jobs, want more than one", ta.RunsBy, ran)
	}
	if sum(ta.Foreign) == 0 {
		t.Errorf("skips %v, none while the item ran in another process only: exclusion across processes not exercised", ta.Skips)
	}
}

// Spread returns the items of jobs jobs over n items, named i0, i1, ...,
// round robin, so that every item has duplicates spread over the run; and
// the n items.
func Spread(jobs, n int) (perJob, items []string) {
	for i := range n {
		items = append(items, fmt.Sprintf("i%d", i))
	}
	for j := range jobs {
		perJob = append(perJob, items[j%n])
	}
	return perJob, items
}

func sum(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}
