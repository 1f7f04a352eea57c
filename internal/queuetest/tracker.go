package queuetest

import (
	"context"
	"maps"
	"sync"
	"time"
)

// Tracker records what the jobs did, by item (what the job is about) and
// by the queue's job id (of type ID). Its overlap count would catch two
// runs of the same item at once.
type Tracker[ID comparable] struct {
	mu       sync.Mutex
	running  map[string]int
	overlaps map[string]int
	runs     map[string]int
	started  map[ID]time.Time
	// work is the body of a run; nth counts the item's runs, this one included.
	work func(ctx context.Context, item string, nth int) error
}

// NewTracker returns a Tracker whose runs do work; nth counts the item's
// runs, the current one included.
func NewTracker[ID comparable](work func(ctx context.Context, item string, nth int) error) *Tracker[ID] {
	return &Tracker[ID]{running: map[string]int{}, overlaps: map[string]int{}, runs: map[string]int{},
		started: map[ID]time.Time{}, work: work}
}

// Run is one run of job id about item: it notes the run (and an overlap
// if another run of item is in progress) and does the work.
func (tr *Tracker[ID]) Run(ctx context.Context, id ID, item string) error {
	tr.mu.Lock()
	tr.running[item]++
	if tr.running[item] > 1 {
		tr.overlaps[item]++
	}
	tr.runs[item]++
	nth := tr.runs[item]
	tr.started[id] = time.Now()
	tr.mu.Unlock()
	defer func() {
		tr.mu.Lock()
		tr.running[item]--
		tr.mu.Unlock()
	}()
	return tr.work(ctx, item, nth)
}

// Snapshot returns copies of the runs and overlaps by item and of the
// start time of each job's last run, by job id.
func (tr *Tracker[ID]) Snapshot() (runs, overlaps map[string]int, started map[ID]time.Time) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return maps.Clone(tr.runs), maps.Clone(tr.overlaps), maps.Clone(tr.started)
}
