package kannuki

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
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

	mu      sync.Mutex
	state   handleState   // see the diagram at handleState
	lost    chan struct{} // made on demand by Lost, closed on loss
	lostErr error         // why the lock was lost, once it was
	counted bool          // took a place under Options.MaxHeld, given back when the lock ends

	// loss is what the lease tells of a loss it learns of between
	// keepalive checks (LossWatcher).
	loss lossListener

	// The keepalive: the Handle waits in its Locker's queue of checks (one
	// timer for all held locks, no goroutine per lock) and goes back there
	// after each check. kmu is held during a check, so stopping waits for it.
	kmu     sync.Mutex
	checker store.Checker
	knode   due.Node
}

// handleState is where a Handle is in its life. It changes only under
// h.mu, and only along these arrows:
//
//	held ──Release──▶ releasing ──lease released──▶ released
//	 │                    └──release found it lost──▶ released, Err set
//	 └──loss──▶ lost ──Release──▶ released, Err set
//
// A loss is told by a failed keepalive check or by the lease
// (store.LossWatcher). It is recorded only in held: while releasing, the
// release's outcome is what reports it, and after that it is moot.
// Entering lost, or leaving releasing, gives back the Options.MaxHeld
// place (once: lost → released gives back nothing). Keepalive checks run
// only in held; a check that finds another state stops the checks.
type handleState uint8

const (
	stateHeld handleState = iota
	stateLost
	stateReleasing
	stateReleased
)

// leave moves the Handle from state from to next and reports whether it
// was in from. Caller holds h.mu.
func (h *Handle) leave(from, next handleState) bool {
	if h.state != from {
		return false
	}
	h.state = next
	if h.counted && (next == stateLost || from == stateReleasing) {
		h.counted = false
		h.l.slots.Add(-1)
	}
	return true
}

// holds reports whether the Handle is in state held.
func (h *Handle) holds() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.state == stateHeld
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

// LockLost implements LossListener: held → lost.
func (w *lossListener) LockLost(cause error) { w.h.markLost(cause) }

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
	if !h.holds() {
		return
	}
	every := h.l.opts.keepalive()
	ctx, cancel := context.WithTimeout(h.ctx, max(every, time.Second))
	err := h.checker.Check(ctx)
	cancel()
	if err != nil {
		h.markLost(err)
		return
	}
	h.l.checks.Push(&h.knode, time.Now().Add(every))
}

// stopKeepalive ends the checks and waits for one in flight; the Handle
// has left held, so no check queues itself again.
func (h *Handle) stopKeepalive() {
	h.kmu.Lock()
	defer h.kmu.Unlock()
	h.l.checks.Remove(&h.knode)
}

// markLost is held → lost: it records the loss, tells the waiting parties
// and emits EventLost. In any other state it does nothing.
func (h *Handle) markLost(cause error) {
	h.mu.Lock()
	if !h.leave(stateHeld, stateLost) {
		h.mu.Unlock()
		return
	}
	h.lostFound(cause)
}

// lostFound records a loss the Handle learned of in held or releasing,
// then tells the waiting parties and emits EventLost. Caller holds h.mu,
// which lostFound unlocks.
func (h *Handle) lostFound(cause error) error {
	err := &LockLostError{Key: h.key.String, Err: cause}
	h.lostErr = err
	if h.lost != nil {
		close(h.lost)
	}
	cancel := h.cancel
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
	if h.leave(stateLost, stateReleased) {
		// The loss is what matters; the lease still ends (a connection to
		// close, a queue place to give up) and its error is expected.
		h.mu.Unlock()
		h.stopKeepalive()
		rctx, cancel := h.l.opts.releaseContext(h.releaseCtx(ctx))
		defer cancel()
		_ = h.endLease(rctx)
		return h.Err()
	}
	if !h.leave(stateHeld, stateReleasing) {
		h.mu.Unlock()
		return nil // released already, or being released
	}
	h.mu.Unlock()
	h.stopKeepalive() // never release while a keepalive check uses the connection
	rctx, cancel := h.l.opts.releaseContext(h.releaseCtx(ctx))
	defer cancel()
	err := h.endLease(rctx)
	h.mu.Lock()
	h.leave(stateReleasing, stateReleased)
	if err != nil && errors.Is(err, ErrLockLost) {
		return h.lostFound(err) // releasing → released, Err set
	}
	h.mu.Unlock()
	if err != nil {
		err = sayf(err, "kannuki: release %q", h.key.String)
	}
	h.l.released(h.ctx, h.key, h.mode, h.granted, err)
	return err
}

// releaseCtx is ctx, or the acquiring call's context when ctx is nil.
func (h *Handle) releaseCtx(ctx context.Context) context.Context {
	if ctx == nil {
		return h.ctx
	}
	return ctx
}

// endLease gives the lease back, through the local queue when the Handle
// takes part in it.
func (h *Handle) endLease(ctx context.Context) error {
	if h.queued {
		return h.releaseQueued(ctx)
	}
	return h.lease.Release(ctx)
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

// heldLock is one lock held by a call chain (see reentry.go): its Handle
// (Locker, key, mode, and whether it still holds), the entry it nests in,
// and the turn that admits the nested calls under it one at a time, made
// by the first of them.
type heldLock struct {
	h    *Handle
	next *heldLock
	turn atomic.Pointer[chan struct{}]
}

// heldIn returns the innermost entry by which the call chain of ctx holds
// key through l, or nil.
func heldIn(ctx context.Context, l *Locker, key string) *heldLock {
	for h, _ := ctx.Value(heldCtxKey{}).(*heldLock); h != nil; h = h.next {
		if h.h.l == l && h.h.key.String == key {
			return h
		}
	}
	return nil
}

// run calls fn under the lock and releases it afterwards, also on panic.
func (h *Handle) run(ctx context.Context, fn func(context.Context) error) (err error) {
	outer, _ := ctx.Value(heldCtxKey{}).(*heldLock)
	h.held.h, h.held.next = h, outer
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
