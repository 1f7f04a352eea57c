package kannuki

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/kannuki-go/kannuki/store"
)

// Re-entrancy. The context fn receives records the lock (heldLock), so a
// call on the same Locker and key with that context, or one derived from
// it, is nested: it does not ask the store again. The rules:
//
//   - Nested calls under an exclusive hold run one at a time among
//     themselves: goroutines that fn starts (an errgroup, say) exclude each
//     other as callers on other goroutines would, while fn itself goes on.
//     A nested call waits for its turn as its options say (TryLock does not
//     wait: it reports false), and its own nested calls take turns under it.
//   - Nested shared calls under a shared hold run together, as readers do;
//     a nested exclusive call under a shared hold fails with ErrDeadlock.
//   - A nested call whose lock has ended (released, or lost) fails with an
//     error matching ErrNotAcquired (or ErrLockLost), never running fn: a
//     context that outlives its lock grants nothing.

// errLockEnded is the cause of a nested call on a context whose lock was
// released before it.
var errLockEnded = errors.New("the lock of this context was already released")

// reenter runs fn for a nested call on a key this call chain holds.
func (l *Locker) reenter(ctx context.Context, held *heldLock, cfg callConfig, fn func(context.Context) error) (bool, error) {
	start, key := time.Now(), held.h.key.String
	notAcquired := func(r Reason, err error) error {
		return &NotAcquiredError{Key: key, Reason: r, Waited: time.Since(start), Err: err}
	}
	if err := held.h.endedErr(); err != nil {
		return false, err
	}
	if held.h.mode == store.ModeShared {
		if cfg.mode == store.ModeExclusive {
			return false, fmt.Errorf("%w: lock %q is held shared by this call chain; upgrading it to exclusive would wait for itself", ErrDeadlock, key)
		}
		if err := ctx.Err(); err != nil {
			return false, notAcquired(reasonOf(err), err)
		}
		return true, fn(ctx)
	}
	if err := held.takeTurn(ctx, cfg.wait); err != nil {
		if errors.Is(err, ErrNotAcquired) {
			return false, notAcquired(ReasonHeld, nil)
		}
		return false, notAcquired(reasonOf(err), err)
	}
	defer held.giveTurn()
	if err := held.h.endedErr(); err != nil { // ended while this call waited
		return false, err
	}
	inner := &heldLock{h: held.h}
	inner.next, _ = ctx.Value(heldCtxKey{}).(*heldLock)
	return true, fn(&lockCtx{Context: ctx, held: inner})
}

// reasonOf is the Reason of a wait that err ended.
func reasonOf(err error) Reason {
	if errors.Is(err, context.DeadlineExceeded) {
		return ReasonTimeout
	}
	return ReasonCanceled
}

// takeTurn waits until no other nested call runs under h, as long as wait
// (store.WaitForever, 0 for a try, or a bound) and ctx allow. A try that
// finds the turn taken returns ErrNotAcquired.
func (h *heldLock) takeTurn(ctx context.Context, wait time.Duration) error {
	turn := h.turn.Load()
	if turn == nil {
		c := make(chan struct{}, 1)
		if !h.turn.CompareAndSwap(nil, &c) {
			c = *h.turn.Load()
		}
		turn = &c
	}
	select {
	case *turn <- struct{}{}:
		return nil
	default:
	}
	if wait == 0 {
		return ErrNotAcquired
	}
	var expired <-chan time.Time
	if wait > 0 {
		t := time.NewTimer(wait)
		defer t.Stop()
		expired = t.C
	}
	select {
	case *turn <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-expired:
		return context.DeadlineExceeded
	}
}

func (h *heldLock) giveTurn() { <-*h.turn.Load() }

// endedErr is nil while the Handle holds its lock; after that it is the
// error a nested call on the lock's context gets.
func (h *Handle) endedErr() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	switch {
	case h.lostErr != nil:
		return h.lostErr
	case h.state != stateHeld:
		return &NotAcquiredError{Key: h.key.String, Reason: ReasonCanceled, Err: errLockEnded}
	}
	return nil
}
