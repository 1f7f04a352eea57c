package backendtest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kannuki-go/kannuki/store"

	"github.com/kannuki-go/kannuki"
)

const (
	// processes and goroutinesPerClient shape the exclusion cases: 16
	// goroutines in each of 3 clients (in-process) or OS processes.
	processes           = 3
	goroutinesPerClient = 16
	// exclusionLimit bounds one exclusion run; past it the workers stop
	// and the case fails (a leaked lock shows up as a hang).
	exclusionLimit = 90 * time.Second
)

// The exclusion cases keep their proof outside the lock, in files that every
// contender of every process touches inside its critical section:
//
//	occupied  created with O_CREATE|O_EXCL on entry and removed on exit;
//	          EEXIST means another holder is inside: two holders overlapped.
//	counter   read, incremented and rewritten inside the critical section;
//	          lost updates show as a final count below the number of cycles.
//	ready-N   process N is connected and about to start (a start barrier).
//	result-N  what process N counted, written when it is done.
const (
	occupiedFile = "occupied"
	counterFile  = "counter"
)

// exclusionResult is what one process reports.
type exclusionResult struct {
	Cycles   int      // critical sections entered
	Attempts int      // acquisitions that were not granted (retried)
	Errors   []string // overlaps and unexpected errors
}

// testExclusion: no two holders ever overlap, among goroutines of several
// clients in one process, and among processes.
func (s *suite) testExclusion(t *testing.T) {
	t.Run("InProcess", func(t *testing.T) {
		key := newKey(t, "")
		dir := t.TempDir()
		initCounter(t, dir)
		clients := make([]store.Backend, processes)
		for i := range clients {
			clients[i] = s.h.New(t)
		}
		var holders atomic.Int32
		var wg sync.WaitGroup
		results := make([]exclusionResult, processes)
		for i, b := range clients {
			wg.Add(1)
			go func() {
				defer wg.Done()
				results[i] = contend(context.Background(), b, key, dir, i, fmt.Sprint("client ", i), share(s.h.Cycles, processes, i), goroutinesPerClient, &holders)
			}()
		}
		wg.Wait()
		checkExclusion(t, dir, s.h.Cycles, results)
		s.expectFreed(t, key, "after the exclusion run")
	})

	t.Run("CrossProcess", func(t *testing.T) {
		if !s.h.MultiProcess {
			t.Skip("Harness.MultiProcess is false: the store is not shared across processes")
		}
		key := newKey(t, "")
		dir := t.TempDir()
		initCounter(t, dir)
		children := make([]*child, processes-1)
		for i := range children {
			children[i] = s.startChild(t, childSpec{
				Role: roleExclusion, Key: key, Dir: dir, Index: i + 1,
				Cycles: share(s.h.Cycles, processes, i+1), Goroutines: goroutinesPerClient,
			})
		}
		// The parent is process 0. A child that fails ends the run early
		// instead of leaving the others waiting at the barrier.
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		for _, c := range children {
			go func() {
				select {
				case <-c.Done():
					if c.Err() != nil {
						cancel()
					}
				case <-ctx.Done():
				}
			}()
		}
		var holders atomic.Int32
		own := contend(ctx, s.h.New(t), key, dir, 0, "process 0", share(s.h.Cycles, processes, 0), goroutinesPerClient, &holders)
		for _, e := range own.Errors {
			t.Error(e)
		}
		own.Errors = nil
		results := []exclusionResult{own}
		for i, c := range children {
			name := fmt.Sprintf("child process %d", i+1)
			if !c.wait(t, name) {
				continue
			}
			r, err := readResult(dir, i+1)
			if err != nil {
				t.Errorf("%s: %v\n--- output:\n%s", name, err, c.Out.String())
				continue
			}
			results = append(results, r)
		}
		if len(results) != processes {
			return
		}
		checkExclusion(t, dir, s.h.Cycles, results)
		s.expectFreed(t, key, "after the cross-process exclusion run")
	})
}

// childExclusion is process spec.Index of CrossProcess.
func childExclusion(t *testing.T, h Harness, spec childSpec) {
	var holders atomic.Int32
	r := contend(context.Background(), h.New(t), spec.Key, spec.Dir, spec.Index, fmt.Sprint("process ", spec.Index), spec.Cycles, spec.Goroutines, &holders)
	for _, e := range r.Errors {
		t.Error(e)
	}
	enc, err := json.Marshal(r)
	if err == nil {
		err = os.WriteFile(filepath.Join(spec.Dir, "result-"+strconv.Itoa(spec.Index)), enc, 0o600)
	}
	if err != nil {
		t.Fatalf("child: write result: %v", err)
	}
}

func readResult(dir string, index int) (exclusionResult, error) {
	var r exclusionResult
	b, err := os.ReadFile(filepath.Join(dir, "result-"+strconv.Itoa(index)))
	if err != nil {
		return r, fmt.Errorf("no result (did the child run the case?): %w", err)
	}
	return r, json.Unmarshal(b, &r)
}

// share is part i of total split in n nearly equal parts.
func share(total, n, i int) int {
	q := total / n
	if i < total%n {
		q++
	}
	return q
}

func initCounter(t testing.TB, dir string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, counterFile), []byte("0"), 0o600); err != nil {
		t.Fatal(err)
	}
}

// checkExclusion compares what the processes counted with the counter file.
func checkExclusion(t testing.TB, dir string, cycles int, results []exclusionResult) {
	t.Helper()
	total, attempts := 0, 0
	for _, r := range results {
		total += r.Cycles
		attempts += r.Attempts
		for _, e := range r.Errors {
			t.Error(e)
		}
	}
	b, err := os.ReadFile(filepath.Join(dir, counterFile))
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.Atoi(string(b))
	if err != nil {
		t.Fatalf("counter file holds %q: %v (torn write by overlapping holders?)", b, err)
	}
	if total != cycles {
		t.Errorf("processes entered the critical section %d times, want %d", total, cycles)
	}
	if n != total {
		t.Errorf("counter is %d after %d critical sections: updates were lost, holders overlapped", n, total)
	}
	t.Logf("%d lock cycles, %d refused attempts retried", total, attempts)
}

// contend runs goroutines that together take key cycles times through b,
// entering the file-backed critical section in dir each time. holders
// counts holders inside this process, a cheaper second witness.
//
// proc numbers the contender (a process, or a client in-process) for the
// start barrier; name says which in messages.
func contend(ctx context.Context, b store.Backend, key store.Key, dir string, proc int, name string, cycles, goroutines int, holders *atomic.Int32) (res exclusionResult) {
	ctx, cancel := context.WithTimeout(ctx, exclusionLimit)
	defer cancel()

	var mu sync.Mutex
	dropped := 0
	fail := func(format string, args ...any) {
		mu.Lock()
		defer mu.Unlock()
		if len(res.Errors) == maxErrors {
			dropped++
			return
		}
		res.Errors = append(res.Errors, fmt.Sprintf("%s (pid %d): ", name, os.Getpid())+fmt.Sprintf(format, args...))
	}
	defer func() {
		if dropped > 0 {
			res.Errors = append(res.Errors, fmt.Sprintf("%s: %d more errors", name, dropped))
		}
	}()
	if err := barrier(ctx, dir, proc); err != nil {
		fail("%v", err)
		return res
	}

	var wg sync.WaitGroup
	for g := range goroutines {
		n := share(cycles, goroutines, g)
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(proc), uint64(g)^uint64(time.Now().UnixNano())))
			me := fmt.Sprintf("%s goroutine %d", name, g)
			done, refused := 0, 0
			defer func() {
				mu.Lock()
				res.Cycles += done
				res.Attempts += refused
				mu.Unlock()
			}()
			for done < n {
				l, r, err := acquireMixed(ctx, b, key, rng)
				refused += r
				if err != nil {
					fail("%s: acquire: %v", me, err)
					return
				}
				for l != nil { // a relock may hand the lock straight back
					err = critical(dir, me, holders, rng)
					var next store.Lease
					var relErr error
					if err == nil && done+1 < n {
						next, relErr = releaseOrRelock(context.WithoutCancel(ctx), l, rng)
					} else {
						relErr = l.Release(context.WithoutCancel(ctx))
					}
					if err != nil {
						fail("%s: %v", me, err)
						return
					}
					if relErr != nil {
						fail("%s: release: %v", me, relErr)
						return
					}
					done++
					l = next
				}
			}
		}()
	}
	wg.Wait()
	return res
}

// maxErrors bounds the errors one process reports: after an overlap every
// goroutine tends to see one.
const maxErrors = 5

// acquireMixed takes key with a randomly chosen kind of request, so that
// waits forever, bounded waits of less than a second and single tries all
// meet under contention. Refused tries and short waits are retried a few
// times, then the goroutine waits forever (tries rarely win against 47
// queued waiters, and each costs a round trip). It returns how many
// attempts were refused.
func acquireMixed(ctx context.Context, b store.Backend, key store.Key, rng *rand.Rand) (store.Lease, int, error) {
	refused := 0
	kind := rng.IntN(10)
	for {
		var wait time.Duration
		switch {
		case kind < 5 || refused >= 5:
			wait = store.WaitForever
		case kind < 7:
			wait = 20 * time.Second
		case kind < 9:
			wait = time.Duration(1+rng.IntN(30)) * time.Millisecond
		default:
			wait = 0
		}
		l, err := b.Acquire(ctx, key, excl(wait))
		if err == nil {
			return l, refused, nil
		}
		if !errors.Is(err, kannuki.ErrNotAcquired) || wait < 0 || ctx.Err() != nil {
			return nil, refused, fmt.Errorf("wait %s: %w", waitString(wait), err)
		}
		refused++
		if wait == 0 {
			time.Sleep(time.Duration(rng.IntN(2000)) * time.Microsecond)
		}
	}
}

// critical is the critical section: it proves exclusivity with the
// occupied marker and the in-process holder count, and bumps the counter.
func critical(dir, me string, holders *atomic.Int32, rng *rand.Rand) error {
	marker := filepath.Join(dir, occupiedFile)
	f, err := os.OpenFile(marker, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if errors.Is(err, fs.ErrExist) {
		other, _ := os.ReadFile(marker)
		if len(other) == 0 {
			other = []byte("another holder")
		}
		return fmt.Errorf("entered the critical section while %s was inside: two holders overlapped", other)
	}
	if err != nil {
		return err
	}
	_, werr := f.WriteString(me)
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	if werr != nil {
		return werr
	}
	if n := holders.Add(1); n != 1 {
		holders.Add(-1)
		return fmt.Errorf("%d holders in this process at once", n)
	}

	p := filepath.Join(dir, counterFile)
	b, err := os.ReadFile(p)
	if err == nil {
		var n int
		n, err = strconv.Atoi(strings.TrimSpace(string(b)))
		if rng.IntN(4) == 0 {
			runtime.Gosched() // widen the window a little
		}
		if err == nil {
			err = os.WriteFile(p, []byte(strconv.Itoa(n+1)), 0o600)
		}
	}

	holders.Add(-1)
	if rerr := os.Remove(marker); err == nil {
		err = rerr
	}
	return err
}

// barrier announces process proc and waits until all processes are ready,
// so that they contend from the start instead of running one after another.
func barrier(ctx context.Context, dir string, proc int) error {
	if err := os.WriteFile(filepath.Join(dir, "ready-"+strconv.Itoa(proc)), nil, 0o600); err != nil {
		return err
	}
	for {
		ready := 0
		for i := range processes {
			if _, err := os.Stat(filepath.Join(dir, "ready-"+strconv.Itoa(i))); err == nil {
				ready++
			}
		}
		if ready == processes {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("start barrier: only %d of %d processes ready: %w", ready, processes, ctx.Err())
		case <-time.After(2 * time.Millisecond):
		}
	}
}
