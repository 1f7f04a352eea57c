package kannukipgxv5

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/kannuki-go/kannuki/store"

	"github.com/kannuki-go/kannuki"
	"github.com/kannuki-go/kannuki/internal/pgsql"
)

// muxLease is one lock held on a shared connection (mux.go).
type muxLease struct {
	c    *sharedConn
	key  store.Key
	mode store.Mode
	id   lockID

	mu       sync.Mutex
	released bool
	// checked is when this lease was last known held: the grant, then
	// each successful Check.
	checked time.Time

	news lossNews // tells the Locker when the connection dies (store.LossWatcher)
}

var (
	_ store.Checker     = (*muxLease)(nil)
	_ store.Relocker    = (*muxLease)(nil)
	_ store.LossWatcher = (*muxLease)(nil)
)

// WatchLoss implements store.LossWatcher: the listener is told when the
// shared connection is destroyed (a failed statement of any lease on it,
// or the check the socket watch runs), before the destroying call
// returns.
func (l *muxLease) WatchLoss(listener store.LossListener) { l.news.watch(listener) }

// checkShare: a Check is answered without a round trip when another
// statement on the same connection succeeded within the last 1/checkShare
// of the time since this lease's previous check. With the Locker's
// keepalive every interval I, a connection then sees at most about
// checkShare keepalive round trips per I, however many leases it holds,
// and a loss shows at most I/checkShare later than with a round trip per
// lease.
const checkShare = 4

// lost is the loss error of a lease whose connection died of cause.
func (l *muxLease) lostErr(cause error) error {
	return &kannuki.LockLostError{Key: l.key.String, Err: fmt.Errorf("the shared connection holding it was closed: %w", cause)}
}

// Release implements store.Lease: pg_advisory_unlock (or _shared) on
// the shared connection, after the statements queued before it, bounded
// by Options.ReleaseTimeout whatever ctx says. When the unlock does not
// confirm, the connection is destroyed (its other leases are lost), and
// an unlock that returned false or a dead connection reports an error
// matching store.ErrLockLost.
func (l *muxLease) Release(ctx context.Context) error {
	_, err := l.unlock(ctx, false)
	return err
}

// Relock implements store.Relocker: the unlock of Release and, when it
// confirmed, a try of the same key on the same shared connection, in one
// statement. The new lease keeps the key's place on the connection.
func (l *muxLease) Relock(ctx context.Context) (store.Lease, error) {
	next, err := l.unlock(ctx, true)
	if next == nil {
		return nil, err
	}
	return next, nil
}

// unlock runs the unlock, or the relock, of Release and Relock. next is
// the new lease only when the relock took the lock again and the
// connection lives; the key then stays booked on it for next.
func (l *muxLease) unlock(ctx context.Context, relock bool) (next *muxLease, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	defer l.news.end()
	if l.released {
		return nil, store.ErrReleased
	}
	l.released = true
	c := l.c
	// No deadline on the wait for the statement slot: every statement
	// ahead is bounded, and the first that runs out of time destroys the
	// connection, which ends the queue at once.
	_ = c.enter(context.Background())
	defer c.leave()
	if cause := c.deadCause(); cause != nil {
		c.released(l.id)
		return nil, l.lostErr(cause)
	}
	c.busy()
	sent := time.Now()
	deadline := c.startBound(sent)
	ok, taken, err := unlockStatement(detach(ctx), c.pc.Conn(), l.key, l.mode, relock)
	if relock && serverCode(err) == pgsql.CodeLockTableFull && !c.pc.Conn().IsClosed() {
		// The relock's try found the lock table full, after its unlock
		// (failure.go): a release, which leaves the other locks on c
		// alone. Unlock once more to be sure.
		if settleUnlock(detach(ctx), c.pc.Conn(), l.key, l.mode) == nil {
			ok, taken, err = true, false, nil
		}
	}
	fired := c.endBound() // before released, which may give the connection back to the pool
	if cause, err := judgeUnlock(l.key.String, ok, err, fired, deadline, c.pc.Conn().IsClosed(), "shared connection"); cause != nil {
		// Every lease on c is lost with it: after a false unlock the
		// session's books cannot be trusted for any of its locks.
		c.kill(cause)
		c.released(l.id)
		return nil, err
	}
	c.proved(sent)
	if taken {
		// The books stay: the key is held on c for the next lease, which
		// takes this one's place in them before the slot is left.
		next = &muxLease{c: c, key: l.key, mode: l.mode, id: l.id, checked: sent}
		c.rebook(next)
		return next, nil
	}
	c.released(l.id)
	return nil, nil
}

// Check implements store.Checker. The connection is shared, so one
// round trip answers for all its leases: the check succeeds without one
// when another statement on the connection succeeded recently enough
// (see checkShare). Otherwise it sends the key's comment, an empty
// statement, once the statements queued before it are done. ctx's
// deadline (or Options.ReleaseTimeout) bounds the wait and the
// statement; ctx's cancellation does not interrupt the statement. A
// connection kept busy past that bound by other callers' statements
// answers the check when one of them, sent after the check began,
// succeeded: the session was alive, and the lock with it. When
// the statement fails the connection is destroyed and every lease on it
// is lost; Check then returns an error matching store.ErrLockLost.
func (l *muxLease) Check(ctx context.Context) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.released {
		return store.ErrReleased
	}
	c := l.c
	if cause := c.deadCause(); cause != nil {
		return l.lostErr(cause)
	}
	if l.fresh(time.Now()) {
		return nil
	}
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(c.m.b.opts.releaseTimeout())
	}
	cctx, cancel := context.WithDeadline(context.WithoutCancel(ctx), deadline)
	defer cancel()
	began := time.Now()
	if err := c.enter(cctx); err != nil {
		// The connection was busy all along. A statement that another
		// caller sent on it after this check began, and that succeeded,
		// proves the session alive, and with it this lock: only this
		// lease's Release unlocks it there.
		if c.alive.Load() >= began.UnixNano() {
			l.checked = began
			return nil
		}
		// The lock is still held as far as anybody knows, but it could not
		// be checked in time.
		return fmt.Errorf("keepalive: the shared connection stayed busy: %w", err)
	}
	defer c.leave()
	if cause := c.deadCause(); cause != nil {
		return l.lostErr(cause)
	}
	now := time.Now()
	if l.fresh(now) { // the check queued before this one answered for it
		return nil
	}
	c.busy()
	c.setDeadline(deadline)
	defer c.clearDeadline()
	if _, err := c.pc.Conn().Exec(detach(ctx), pgsql.Comment(l.key.String)); err != nil {
		cause := fmt.Errorf("keepalive failed: %w", err)
		c.kill(cause)
		return l.lostErr(cause)
	}
	c.proved(now)
	l.checked = now
	return nil
}

// fresh reports, and records, whether a statement on the connection
// succeeded recently enough to answer a check at now.
func (l *muxLease) fresh(now time.Time) bool {
	alive := time.Unix(0, l.c.alive.Load())
	if now.Sub(alive) > now.Sub(l.checked)/checkShare {
		return false
	}
	l.checked = now
	return true
}

// PID is the server process id of the session holding the lock, or 0
// once the lease is released or its connection closed.
func (l *muxLease) PID() uint32 {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.released || l.c.deadCause() != nil {
		return 0
	}
	return l.c.pid
}
