package kannuki

import (
	"context"
	"sync"
	"time"
)

// localQueue makes goroutines of one Locker that want the same key
// exclusively queue in the process, first come first served, so that at
// most one of them at a time holds or waits for the key in the database:
// a thousand goroutines waiting on one key use one waiting connection, not
// a thousand, and each handoff inside the process costs the database one
// try. Shared locks do not queue here (they do not exclude each other).
type localQueue struct {
	mu    sync.Mutex
	gates map[string]*gate
	spare []*gate // idle gates kept for reuse, so a lock cycle allocates none
}

// maxSpareGates bounds the gates kept for reuse.
const maxSpareGates = 64

// gate is one key's place in the process: taken by the goroutine that
// holds or waits for the key in the database, with the others queued.
type gate struct {
	taken   bool
	waiters []chan struct{} // FIFO; a closed channel means "the gate is yours"
}

// enter takes key's gate, waiting as wait says (WaitForever, 0 for a try,
// or > 0) and no longer than ctx. It returns ErrNotAcquired when a try
// finds the gate taken or the wait runs out, and ctx's error when ctx ends.
// onWait, if not nil, is told when the wait begins.
func (q *localQueue) enter(ctx context.Context, key string, wait time.Duration, onWait WaitNotifier) error {
	q.mu.Lock()
	if q.gates == nil {
		q.gates = make(map[string]*gate)
	}
	g := q.gates[key]
	if g == nil {
		g = q.newGateLocked()
		q.gates[key] = g
	}
	if !g.taken {
		g.taken = true
		q.mu.Unlock()
		return nil
	}
	if wait == 0 {
		q.mu.Unlock()
		return ErrNotAcquired
	}
	mine := make(chan struct{})
	g.waiters = append(g.waiters, mine)
	q.mu.Unlock()
	if onWait != nil {
		onWait.NotifyWait()
	}

	var expired <-chan time.Time
	if wait > 0 {
		t := time.NewTimer(wait)
		defer t.Stop()
		expired = t.C
	}
	var err error
	select {
	case <-mine:
		return nil
	case <-expired:
		err = ErrNotAcquired
	case <-ctx.Done():
		err = ctx.Err()
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	select {
	case <-mine: // handed over while giving up: pass it on
		q.passLocked(key, g)
	default:
		g.remove(mine)
	}
	return err
}

// leave gives key's gate to the next waiter, or frees it.
func (q *localQueue) leave(key string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if g := q.gates[key]; g != nil {
		q.passLocked(key, g)
	}
}

func (q *localQueue) passLocked(key string, g *gate) {
	if len(g.waiters) == 0 {
		delete(q.gates, key) // nothing to remember for an idle key
		if len(q.spare) < maxSpareGates {
			g.taken = false
			q.spare = append(q.spare, g)
		}
		return
	}
	next := g.waiters[0]
	g.waiters = g.waiters[1:]
	close(next)
}

func (q *localQueue) newGateLocked() *gate {
	if n := len(q.spare); n > 0 {
		g := q.spare[n-1]
		q.spare = q.spare[:n-1]
		return g
	}
	return &gate{}
}

func (g *gate) remove(c chan struct{}) {
	for i, w := range g.waiters {
		if w == c {
			g.waiters = append(g.waiters[:i], g.waiters[i+1:]...)
			return
		}
	}
}
