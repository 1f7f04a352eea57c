// Package kannukimem is an in-process store.Backend: locks live in this
// process's memory and exclude goroutines of this process only.
//
// It is the backend of package kannukitest and suits single-process
// programs that want the Locker's API without a database. Unlike the Ruby
// gem's test mode it really locks: two goroutines never hold one key
// exclusively at once, shared holders exclude exclusive ones, and waiters
// block on channels (no polling) until granted, the wait runs out or their
// context ends.
//
// # Fairness
//
// Each key has a FIFO queue. A request is granted at once only when nobody
// waits before it and its mode is compatible with the holders; otherwise it
// queues. On release the queue is granted from the front: an exclusive
// waiter alone, or a run of consecutive shared waiters together. So a
// waiting writer blocks readers that arrive after it, and no waiter starves.
//
// # Simulating other holders
//
// SimulateHeld makes a key look held by "someone else" (another process, in
// the story of the test): tries fail and waiters wait until the simulated
// hold is released. Lose makes held leases lost, as when a database session
// is killed, so lock-loss handling can be tested without a database.
package kannukimem

import (
	"container/list"
	"context"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/kannuki-go/kannuki/store"
)

// Backend is an in-process lock table. The zero value is not usable; call
// New. It is safe for concurrent use and starts no goroutines.
type Backend struct {
	mu    sync.Mutex
	locks map[string]*entry // by Key.String; an entry exists while held or awaited
}

// New returns an empty in-process lock table.
func New() *Backend {
	return &Backend{locks: make(map[string]*entry)}
}

var (
	_ store.Backend = (*Backend)(nil)
	_ store.Lister  = (*Backend)(nil)
)

// entry is the state of one key: who holds it and who waits, in order.
type entry struct {
	key       string
	holders   map[*holder]struct{}
	exclusive bool      // true when the (single) holder is exclusive
	waiters   list.List // of *waiter, FIFO
}

// holder is one grant: a lease or a simulated hold.
type holder struct {
	mode      store.Mode
	simulated bool
	since     time.Time
	released  bool
	lost      bool // set by Lose: the grant was taken away
}

// waiter is a queued request. ready is closed once h is set.
type waiter struct {
	mode  store.Mode
	since time.Time
	ready chan struct{}
	h     *holder
	elem  *list.Element
}

// Acquire implements store.Backend. Identity is Key.String: two Keys
// with the same String are the same lock.
func (b *Backend) Acquire(ctx context.Context, key store.Key, req store.Request) (store.Lease, error) {
	start := time.Now()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if req.Mode != store.ModeExclusive && req.Mode != store.ModeShared {
		return nil, fmt.Errorf("%w: unknown lock mode %d", store.ErrInvalidArgument, req.Mode)
	}

	b.mu.Lock()
	e := b.entry(key.String)
	if e.waiters.Len() == 0 && e.compatible(req.Mode) {
		h := e.grant(req.Mode, false)
		b.mu.Unlock()
		return &lease{b: b, key: key.String, h: h}, nil
	}
	if req.Wait == 0 {
		b.forget(e)
		b.mu.Unlock()
		return nil, store.ErrNotAcquired
	}
	w := &waiter{mode: req.Mode, since: start, ready: make(chan struct{})}
	w.elem = e.waiters.PushBack(w)
	b.mu.Unlock()
	if req.OnWait != nil {
		req.OnWait.NotifyWait()
	}

	var expired <-chan time.Time
	if req.Wait > 0 {
		t := time.NewTimer(req.Wait)
		defer t.Stop()
		expired = t.C
	}
	var giveUp error
	select {
	case <-w.ready:
		return &lease{b: b, key: key.String, h: w.h}, nil
	case <-ctx.Done():
		giveUp = ctx.Err()
	case <-expired:
		giveUp = store.ErrNotAcquired
	}

	b.mu.Lock()
	defer b.mu.Unlock()
	if w.h != nil {
		// Granted in the instant before we gave up: the grant came first,
		// so the caller gets the lock (it is held, nothing leaks).
		return &lease{b: b, key: key.String, h: w.h}, nil
	}
	e.waiters.Remove(w.elem)
	e.dispatch() // a writer leaving the front may let readers behind it in
	b.forget(e)
	return nil, giveUp
}

// Held implements store.Backend: true while any lease or simulated hold
// has key.
func (b *Backend) Held(ctx context.Context, key store.Key) (bool, error) {
	if err := ctx.Err(); err != nil {
		return false, err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	e, ok := b.locks[key.String]
	return ok && len(e.holders) > 0, nil
}

// Locks implements store.Lister: every holder and waiter, by key, holders
// first, each group in the order it arrived. PID is this process; simulated
// holds show Application "kannukimem (simulated)".
func (b *Backend) Locks(ctx context.Context) ([]store.LockInfo, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	pid := int64(os.Getpid())
	b.mu.Lock()
	var out []store.LockInfo
	for _, e := range b.locks {
		var held []store.LockInfo
		for h := range e.holders {
			app := "kannukimem"
			if h.simulated {
				app = "kannukimem (simulated)"
			}
			held = append(held, store.LockInfo{Name: e.key, Mode: h.mode, Granted: true, PID: pid, Application: app, Since: h.since})
		}
		slices.SortStableFunc(held, func(a, b store.LockInfo) int { return a.Since.Compare(b.Since) })
		out = append(out, held...)
		for el := e.waiters.Front(); el != nil; el = el.Next() {
			w := el.Value.(*waiter)
			out = append(out, store.LockInfo{Name: e.key, Mode: w.mode, PID: pid, Application: "kannukimem", Since: w.since})
		}
	}
	b.mu.Unlock()
	slices.SortStableFunc(out, func(a, b store.LockInfo) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

// entry returns the entry of key, creating it. Call with b.mu held.
func (b *Backend) entry(key string) *entry {
	e, ok := b.locks[key]
	if !ok {
		e = &entry{key: key, holders: make(map[*holder]struct{})}
		b.locks[key] = e
	}
	return e
}

// forget drops e from the table once nobody holds or awaits it, so the
// table does not grow with every key ever used. Call with b.mu held.
func (b *Backend) forget(e *entry) {
	if len(e.holders) == 0 && e.waiters.Len() == 0 && b.locks[e.key] == e {
		delete(b.locks, e.key)
	}
}

// compatible reports whether a request in mode could be granted now,
// ignoring the queue.
func (e *entry) compatible(mode store.Mode) bool {
	if mode == store.ModeShared {
		return !e.exclusive
	}
	return len(e.holders) == 0
}

// grant records a new holder. The caller checked compatibility.
func (e *entry) grant(mode store.Mode, simulated bool) *holder {
	h := &holder{mode: mode, simulated: simulated, since: time.Now()}
	e.holders[h] = struct{}{}
	e.exclusive = mode == store.ModeExclusive
	return h
}

// drop removes a holder and lets the queue in.
func (e *entry) drop(h *holder) {
	delete(e.holders, h)
	if len(e.holders) == 0 {
		e.exclusive = false
	}
	e.dispatch()
}

// dispatch grants waiters from the front of the queue for as long as they
// are compatible: one exclusive waiter, or a run of shared ones.
func (e *entry) dispatch() {
	for el := e.waiters.Front(); el != nil; el = e.waiters.Front() {
		w := el.Value.(*waiter)
		if !e.compatible(w.mode) {
			return
		}
		e.waiters.Remove(el)
		w.h = e.grant(w.mode, false)
		close(w.ready)
	}
}
