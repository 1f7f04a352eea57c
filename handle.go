package kannuki

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/kannuki-go/kannuki/internal/due"
	"github.com/kannuki-go/kannuki/store"
)

// Handle is a held lock, returned by Acquire. Release it exactly when done;
// Release is idempotent and works with an already canceled context, so
// `defer h.Release(ctx)` is always right.
type Handle struct {
	l       *Locker
	key     store.Key
	mode    store.Mode
	lease   store.Lease
	ctx     context.Context // the acquiring call's values, never canceled: for events and checks
	granted time.Time
	queued  bool      // holds the key's place in the Locker's local queue
	watch   waitWatch // while acquiring, with a hook: reports EventWaiting

	// For WithLock: fn's context, and this lock in the call chain's held
	// list. They live here so that a lock cycle allocates little.
	held   heldLock
	fctx   lockCtx
	cancel context.CancelCauseFunc // cancels fctx; set before the keepalive starts

	mu       sync.Mutex
	lost     chan struct{} // made on demand by Lost, closed on loss
	lostErr  error
	released bool
	slot     bool // counts against Options.MaxHeld until the lock ends

	// loss is what the lease tells of a loss it learns of between
	// keepalive checks (LossWatcher).
	loss lossListener

	// The keepalive: the Handle waits in its Locker's queue of checks (one
	// timer for all held locks, no goroutine per lock) and goes back there
	// after each check. kmu is held during a check, so stopping waits for it.
	kmu      sync.Mutex
	checker  store.Checker
	knode    due.Node
	kstopped bool
}

// Key returns the full key, prefix included.
func (h *Handle) Key() string { return h.key.String }

// Lost returns a channel that is closed when the lock is found lost (the
// keepalive failed, or the release showed it was no longer held).
func (h *Handle) Lost() <-chan struct{} {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.lost == nil { // made on demand: most callers never ask
		h.lost = make(chan struct{})
		if h.lostErr != nil {
			close(h.lost)
		}
	}
	return h.lost
}

// Err returns nil while the lock is held, and an error matching ErrLockLost
// once it was found lost.
func (h *Handle) Err() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.lostErr
}

// lossListener is the Handle's LossListener. It is a field of the Handle,
// so handing it to the lease allocates nothing.
type lossListener struct{ h *Handle }

// LockLost implements LossListener: the lock is lost unless the Handle is
// already being released, whose outcome then reports the loss.
func (w *lossListener) LockLost(cause error) {
	h := w.h
	h.mu.Lock()
	released := h.released
	h.mu.Unlock()
	if !released {
		h.markLost(cause)
	}
}

// startKeepalive hands the lease the Handle's loss listener, if it can
// tell of a loss itself, and checks the lease every interval, if it can be
// checked.
func (h *Handle) startKeepalive() {
	if w, ok := h.lease.(store.LossWatcher); ok {
		h.loss.h = h
		w.WatchLoss(&h.loss)
	}
	c, ok := h.lease.(store.Checker)
	every := h.l.opts.keepalive()
	if !ok || every < 0 {
		return
	}
	h.kmu.Lock()
	defer h.kmu.Unlock()
	h.checker, h.knode.Owner = c, h
	h.l.checks.Push(&h.knode, h.granted.Add(every))
}

// checkDue starts the check of a Handle that fell due, on a goroutine of
// its own: a check is a round trip, and one slow connection must not hold
// up the checks of the others.
func checkDue(n *due.Node) { go n.Owner.(*Handle).check() }

// check runs one keepalive round trip and queues the next, or reports the
// loss. It holds kmu throughout, so Release never overlaps a check and a
// loss is recorded before Release can report a normal release.
func (h *Handle) check() {
	h.kmu.Lock()
	defer h.kmu.Unlock()
	if h.kstopped {
		return
	}
	every := h.l.opts.keepalive()
	ctx, cancel := context.WithTimeout(h.ctx, max(every, time.Second))
	err := h.checker.Check(ctx)
	cancel()
	if err != nil {
		h.kstopped = true
		h.markLost(err)
		return
	}
	h.l.checks.Push(&h.knode, time.Now().Add(every))
}

// stopKeepalive ends the checks and waits for one in flight.
func (h *Handle) stopKeepalive() {
	h.kmu.Lock()
	defer h.kmu.Unlock()
	h.kstopped = true
	h.l.checks.Remove(&h.knode)
}

// markLost records the loss once, tells the waiting parties and emits EventLost.
func (h *Handle) markLost(cause error) error {
	h.mu.Lock()
	if h.lostErr != nil {
		err := h.lostErr
		h.mu.Unlock()
		return err
	}
	err := &LockLostError{Key: h.key.String, Err: cause}
	h.lostErr = err
	if h.lost != nil {
		close(h.lost)
	}
	cancel := h.cancel
	h.freeSlotLocked()
	h.mu.Unlock()
	if cancel != nil {
		cancel(err)
	}
	hold := time.Since(h.granted)
	h.l.stats.ended(hold, true)
	h.l.emit(h.ctx, Event{Kind: EventLost, Key: h.key.String, Mode: h.mode, Hold: hold, Err: cause})
	return err
}

// Release gives the lock back. It is idempotent: later calls return nil.
// It works when ctx is already canceled (bounded by Options.ReleaseTimeout).
// It returns an error matching ErrLockLost when the lock had been lost.
func (h *Handle) Release(ctx context.Context) error {
	h.mu.Lock()
	if h.released {
		h.mu.Unlock()
		return nil
	}
	h.released = true
	h.mu.Unlock()
	h.stopKeepalive() // never release while a keepalive check uses the connection
	if ctx == nil {
		ctx = h.ctx
	}
	rctx, cancel := h.l.opts.releaseContext(ctx)
	defer cancel()
	var err error
	if h.queued {
		err = h.releaseQueued(rctx)
	} else {
		err = h.lease.Release(rctx)
	}
	if lost := h.Err(); lost != nil {
		return lost // the release was expected to fail; the loss is what matters
	}
	if err != nil && errors.Is(err, ErrLockLost) {
		return h.markLost(err)
	}
	if err != nil {
		err = sayf(err, "kannuki: release %q", h.key.String)
	}
	h.mu.Lock()
	h.freeSlotLocked()
	h.mu.Unlock()
	h.l.released(h.ctx, h.key, h.mode, h.granted, err)
	return err
}

// freeSlotLocked gives back the Handle's place under Options.MaxHeld, once.
// Caller holds h.mu.
func (h *Handle) freeSlotLocked() {
	if h.slot {
		h.slot = false
		h.l.slots.Add(-1)
	}
}

// releaseQueued gives the lock back and the key's place in the local queue
// to the next goroutine. When one waits and the lease can, it relocks: the
// unlock and the next goroutine's try in one round trip, the lock (if the
// try got it) handed over with the place.
func (h *Handle) releaseQueued(ctx context.Context) error {
	q := &h.l.queue
	r, ok := h.lease.(store.Relocker)
	if !ok || h.Err() != nil || !q.waited(h.key.String) {
		err := h.lease.Release(ctx)
		q.leave(h.key.String, nil) // after the database lock is given back
		return err
	}
	next, err := r.Relock(ctx)
	q.leave(h.key.String, next)
	return err
}

// heldCtxKey is the context key under which the locks a call chain holds
// are recorded, as a linked list (innermost first): the basis of
// re-entrancy. A single zero-size key keeps ctx.Value allocation-free.
type heldCtxKey struct{}

// lockCtx is the context fn runs with: the call's cancelable context, plus
// the held list with this lock at its head. It answers the held-list key
// itself instead of wrapping the context once more.
type lockCtx struct {
	context.Context
	held *heldLock
}

// Value implements context.Context.
func (c *lockCtx) Value(key any) any {
	if key == (heldCtxKey{}) {
		return c.held
	}
	return c.Context.Value(key)
}

// heldLock is one lock held by a call chain (see reentry.go).
type heldLock struct {
	l    *Locker
	key  string
	mode store.Mode
	h    *Handle // the lock's Handle: whether it still holds
	next *heldLock

	// turn admits the nested calls under this entry one at a time.
	turnOnce sync.Once
	turn     chan struct{}
}

// heldIn returns the innermost entry by which the call chain of ctx holds
// key through l, or nil.
func heldIn(ctx context.Context, l *Locker, key string) *heldLock {
	for h, _ := ctx.Value(heldCtxKey{}).(*heldLock); h != nil; h = h.next {
		if h.l == l && h.key == key {
			return h
		}
	}
	return nil
}

// run calls fn under the lock and releases it afterwards, also on panic.
func (h *Handle) run(ctx context.Context, fn func(context.Context) error) (err error) {
	outer, _ := ctx.Value(heldCtxKey{}).(*heldLock)
	h.held = heldLock{l: h.l, key: h.key.String, mode: h.mode, h: h, next: outer}
	cctx, cancel := context.WithCancelCause(ctx)
	h.fctx = lockCtx{Context: cctx, held: &h.held}
	fctx := &h.fctx
	h.cancel = cancel
	h.startKeepalive()
	if lost := h.Err(); lost != nil { // lost before fn could start: fn never runs without its lock
		_ = h.Release(ctx)
		cancel(context.Canceled)
		return lost
	}
	done := false
	defer func() {
		if !done { // fn panicked: release, then let the panic go on
			_ = h.Release(ctx)
			cancel(context.Canceled)
		}
	}()
	ferr := fn(fctx)
	done = true
	rerr := h.Release(ctx)
	cancel(context.Canceled)
	if lost := h.Err(); lost != nil {
		if ferr == nil || errors.Is(ferr, context.Canceled) || errors.Is(ferr, ErrLockLost) {
			return lost
		}
		return errors.Join(lost, ferr)
	}
	if rerr != nil {
		return errors.Join(ferr, rerr)
	}
	return ferr
}
