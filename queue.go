package kannuki

import (
	"context"
	"sync"
	"time"

	"github.com/kannuki-go/kannuki/store"
)

// localQueue makes goroutines of one Locker that want the same key
// exclusively queue in the process, first come first served, so that at
// most one of them at a time holds or waits for the key in the database:
// a thousand goroutines waiting on one key use one waiting connection, not
// a thousand. A handoff inside the process costs one round trip: with a
// lease that is a Relocker, the leaving goroutine's unlock and the next
// one's try go to the database together; otherwise the next goroutine
// tries after the unlock. Shared locks do not queue here (they do not
// exclude each other).
type localQueue struct {
	mu    sync.Mutex
	gates map[string]*gate
	spare []*gate  // idle gates kept for reuse, so a lock cycle allocates none
	opts  *Options // the Locker's: ReleaseTimeout for a lock nobody took
}

// maxSpareGates bounds the gates kept for reuse.
const maxSpareGates = 64

// gate is one key's place in the process: taken by the goroutine that
// holds or waits for the key in the database, with the others queued.
type gate struct {
	taken   bool
	waiters []*waiter // FIFO
}

// waiter is a goroutine queued at a gate.
type waiter struct {
	ready chan struct{} // closed when the gate is the waiter's
	// lease, set before ready is closed, is the key's lock already taken
	// for the waiter by the goroutine that left (Relocker), or nil: the
	// waiter then asks the backend itself.
	lease store.Lease
}

// enter takes key's gate, waiting as wait says (WaitForever, 0 for a try,
// or > 0) and no longer than ctx. It returns ErrNotAcquired when a try
// finds the gate taken or the wait runs out, and ctx's error when ctx ends.
// onWait, if not nil, is told when the wait begins. With the gate may come
// the lock itself, taken for this caller by the goroutine that left; the
// caller then holds it and need not ask the backend.
func (q *localQueue) enter(ctx context.Context, key string, wait time.Duration, onWait store.WaitNotifier) (store.Lease, error) {
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
		return nil, nil
	}
	if wait == 0 {
		q.mu.Unlock()
		return nil, ErrNotAcquired
	}
	w := &waiter{ready: make(chan struct{})}
	g.waiters = append(g.waiters, w)
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
	case <-w.ready:
		return w.lease, nil
	case <-expired:
		err = ErrNotAcquired
	case <-ctx.Done():
		err = ctx.Err()
	}
	q.mu.Lock()
	select {
	case <-w.ready: // handed over while giving up: pass it on
		unwanted := q.passLocked(key, g, w.lease)
		q.mu.Unlock()
		q.drop(unwanted)
	default:
		g.remove(w)
		q.mu.Unlock()
	}
	return nil, err
}

// waited reports whether a goroutine is queued for key's gate.
func (q *localQueue) waited(key string) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	g := q.gates[key]
	return g != nil && len(g.waiters) > 0
}

// leave gives key's gate to the next waiter, with next (the lock already
// taken for it, or nil), or frees the gate. When nobody waits any more,
// next is released.
func (q *localQueue) leave(key string, next store.Lease) {
	q.mu.Lock()
	unwanted := next
	if g := q.gates[key]; g != nil {
		unwanted = q.passLocked(key, g, next)
	}
	q.mu.Unlock()
	q.drop(unwanted)
}

// passLocked gives g to its next waiter with lease, or frees it. It
// returns lease when there was nobody to give it to.
func (q *localQueue) passLocked(key string, g *gate, lease store.Lease) (unwanted store.Lease) {
	if len(g.waiters) == 0 {
		delete(q.gates, key) // nothing to remember for an idle key
		if len(q.spare) < maxSpareGates {
			g.taken = false
			q.spare = append(q.spare, g)
		}
		return lease
	}
	next := g.waiters[0]
	g.waiters[0] = nil
	g.waiters = g.waiters[1:]
	next.lease = lease
	close(next.ready)
	return nil
}

// drop releases a lock taken for a waiter that gave up meanwhile.
func (q *localQueue) drop(l store.Lease) {
	if l == nil {
		return
	}
	var opts Options
	if q.opts != nil {
		opts = *q.opts
	}
	ctx, cancel := opts.releaseContext(context.Background())
	defer cancel()
	// An error leaves nothing held: a Release in doubt destroys its
	// connection, and nobody was told they hold this lock.
	_ = l.Release(ctx)
}

func (q *localQueue) newGateLocked() *gate {
	if n := len(q.spare); n > 0 {
		g := q.spare[n-1]
		q.spare = q.spare[:n-1]
		return g
	}
	return &gate{}
}

func (g *gate) remove(w *waiter) {
	for i, x := range g.waiters {
		if x == w {
			g.waiters = append(g.waiters[:i], g.waiters[i+1:]...)
			return
		}
	}
}
