package chaos

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kannuki-go/kannuki"
	"go.uber.org/goleak"
)

// childEnv turns a re-executed test binary into a worker process of the
// overlap checker; its value is a JSON childSpec.
const childEnv = "KANNUKI_CHAOS_CHILD"

// childLimit bounds a child's life whatever happens to its parent.
var childLimit = 30 * time.Minute

// childSpec tells a child what to do.
type childSpec struct {
	Kind       string
	Dir        string // the run directory: ledger, event logs, stop file
	FileDir    string // the file store's directory
	Proc       int
	Goroutines int
	Keys       []string
	AppName    string
	Keepalive  time.Duration
	HoldMax    time.Duration
	Parent     int // the parent's pid: the child exits when it is gone
	Seed       uint64
}

func childSpecFromEnv() (childSpec, bool) {
	v := os.Getenv(childEnv)
	if v == "" {
		return childSpec{}, false
	}
	var s childSpec
	if err := json.Unmarshal([]byte(v), &s); err != nil {
		fmt.Fprintln(os.Stderr, "chaos child: bad spec:", err)
		os.Exit(2)
	}
	return s, true
}

// runChild is the main function of a worker process. It returns the exit
// code: 0 when it stopped cleanly (no harness error, no leaked goroutine).
func runChild(spec childSpec) int {
	time.AfterFunc(childLimit, func() {
		fmt.Fprintln(os.Stderr, "chaos child: life limit reached")
		os.Exit(3)
	})
	problems, _ := runWorkers(spec, nil)
	// Everything the child started must be gone once its pool is closed.
	var leak error
	for i := 0; i < 50; i++ {
		if leak = goleak.Find(); leak == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if leak != nil {
		problems = append(problems, "leaked goroutines: "+leak.Error())
	}
	done := filepath.Join(spec.Dir, "done-"+strconv.Itoa(spec.Proc))
	_ = os.WriteFile(done, []byte(fmt.Sprint(problems)), 0o600)
	if len(problems) > 0 {
		for _, p := range problems {
			fmt.Fprintln(os.Stderr, "chaos child:", p)
		}
		return 1
	}
	return 0
}

// runWorkers opens the backend and runs spec.Goroutines workers until the
// run directory has a stop file, or stop (if not nil) is closed. It is the
// body of a child process and of the parent's own process 0. It returns
// the problems it met and its Locker's Stats.
func runWorkers(spec childSpec, stop <-chan struct{}) ([]string, kannuki.Stats) {
	b, closeFn, err := openBackend(context.Background(), backendConfig{
		Kind: spec.Kind, AppName: spec.AppName, MaxConns: spec.Goroutines + 2, Dir: spec.FileDir,
	})
	if err != nil {
		return []string{"open backend: " + err.Error()}, kannuki.Stats{}
	}
	defer closeFn()
	l := kannuki.New(b, kannuki.Options{KeepaliveInterval: spec.Keepalive})
	led := newLedger(spec.Dir)
	defer led.close()
	ev, err := openEventLog(filepath.Join(spec.Dir, "events-"+strconv.Itoa(spec.Proc)+".jsonl"))
	if err != nil {
		return []string{err.Error()}, kannuki.Stats{}
	}
	defer ev.close()
	if err := os.WriteFile(filepath.Join(spec.Dir, "ready-"+strconv.Itoa(spec.Proc)), nil, 0o600); err != nil {
		return []string{err.Error()}, kannuki.Stats{}
	}

	var stopped atomic.Bool
	watchDone := make(chan struct{})
	quit := make(chan struct{})
	go func() {
		defer close(watchDone)
		t := time.NewTicker(20 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-stop:
				stopped.Store(true)
				return
			case <-quit:
				return
			case <-t.C:
			}
			if _, err := os.Stat(filepath.Join(spec.Dir, "stop")); err == nil {
				stopped.Store(true)
				return
			}
			if spec.Parent != 0 && os.Getppid() != spec.Parent {
				fmt.Fprintln(os.Stderr, "chaos child: parent gone")
				os.Exit(4)
			}
		}
	}()
	workers := make([]*worker, spec.Goroutines)
	var wg sync.WaitGroup
	for g := range workers {
		w := &worker{
			proc: spec.Proc, g: g, l: l, keys: spec.Keys, led: led, ev: ev,
			rng:     rand.New(rand.NewPCG(spec.Seed, uint64(g))),
			holdMax: spec.HoldMax,
		}
		workers[g] = w
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stopped.Load() && w.harness.Load() == nil {
				w.cycle()
			}
		}()
	}
	wg.Wait()
	close(quit)
	<-watchDone
	var problems []string
	for _, w := range workers {
		if p := w.harness.Load(); p != nil && !errors.Is(*p, os.ErrClosed) {
			problems = append(problems, fmt.Sprintf("worker %d.%d: %v", w.proc, w.g, *p))
		}
	}
	return problems, l.Stats()
}
