package kannukipgxv5

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/kannuki-go/kannuki/store"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/kannuki-go/kannuki"
	"github.com/kannuki-go/kannuki/internal/pgsql"
	"github.com/kannuki-go/kannuki/internal/sockbound"
	"github.com/kannuki-go/kannuki/internal/sockwatch"
)

// lease is one held lock and the pool connection pinned for it.
type lease struct {
	b    *Backend
	key  store.Key
	mode store.Mode

	mu      sync.Mutex
	pc      *pgxpool.Conn // nil once released or destroyed
	lost    error         // why the connection was destroyed by a check
	watched bool          // w is registered with the Backend's poller

	bound sockbound.Bound // the unlock's watchdog (Backend.stmtDog)
	w     sockwatch.Watch // the socket watch while the lock is held (watch.go)
	news  lossNews        // tells the Locker of a loss (store.LossWatcher)
}

var (
	_ store.Checker     = (*lease)(nil)
	_ store.Relocker    = (*lease)(nil)
	_ store.LossWatcher = (*lease)(nil)
)

// WatchLoss implements store.LossWatcher: the listener is told when a
// keepalive check, or the check the socket watch runs, destroyed the
// connection, before that check returns.
func (l *lease) WatchLoss(listener store.LossListener) { l.news.watch(listener) }

// Release implements store.Lease. It unlocks on the pinned connection
// with pg_advisory_unlock (or _unlock_shared), bounded by
// Options.ReleaseTimeout whatever ctx says, and returns the connection to
// the pool only when the unlock confirmed (returned true). Otherwise it
// destroys the connection, and reports an error matching
// store.ErrLockLost when the unlock returned false or the session was
// gone.
func (l *lease) Release(ctx context.Context) error {
	_, err := l.unlock(ctx, false)
	return err
}

// Relock implements store.Relocker: the unlock of Release and, when it
// confirmed, a try of the same key on the same connection, in one
// statement. The new lease keeps the connection pinned.
func (l *lease) Relock(ctx context.Context) (store.Lease, error) {
	pc, err := l.unlock(ctx, true)
	if pc == nil {
		return nil, err
	}
	next := &lease{b: l.b, key: l.key, mode: l.mode, pc: pc}
	next.mu.Lock() // the watch may fire at once
	next.watch()
	next.mu.Unlock()
	return next, nil
}

// unlock runs the unlock, or the relock, of Release and Relock. It
// returns the connection only when the relock took the lock again on it;
// otherwise the connection went back to the pool or was destroyed.
func (l *lease) unlock(ctx context.Context, relock bool) (*pgxpool.Conn, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	defer l.news.end()
	pc := l.pc
	if pc == nil {
		if l.lost != nil {
			return nil, &kannuki.LockLostError{Key: l.key.String, Err: l.lost}
		}
		return nil, store.ErrReleased
	}
	l.pc = nil
	l.unwatch()
	// Bounded by the watchdog through the socket, on a context that cannot
	// end: pgx would watch a context with a timeout around the statement,
	// which costs more than the rest of the release (see watchdog.go).
	deadline := time.Now().Add(l.b.opts.releaseTimeout())
	l.bound.Start(&l.b.stmtDog, pc.Conn().PgConn().Conn(), deadline)
	ok, taken, err := unlockStatement(detach(ctx), pc.Conn(), l.key, l.mode, relock)
	if relock && serverCode(err) == pgsql.CodeLockTableFull && !pc.Conn().IsClosed() {
		// The relock's try found the lock table full, after its unlock
		// (failure.go): a release. Unlock once more to be sure.
		if settleUnlock(detach(ctx), pc.Conn(), l.key, l.mode) == nil {
			ok, taken, err = true, false, nil
		}
	}
	fired := l.bound.End(&l.b.stmtDog)
	if cause, err := judgeUnlock(l.key.String, ok, err, fired, deadline, pc.Conn().IsClosed(), "connection"); cause != nil {
		l.news.tell(fmt.Errorf("the connection holding it was closed: %w", cause))
		destroy(pc, l.b.opts.releaseTimeout())
		return nil, err
	}
	if taken {
		return pc, nil
	}
	pc.Release()
	return nil, nil
}

// Check implements store.Checker with one round trip on the pinned
// connection: an empty statement that is only the key's comment, so that
// pg_stat_activity shows the holder's key from the first keepalive on. The
// statement is bounded by ctx's deadline, or Options.ReleaseTimeout when
// ctx has none, but a cancellation of ctx does not interrupt it (pgx would
// close the connection, and with it the lock). On failure the connection is
// destroyed: the lock is lost or about to be, and the LossListener is
// told before Check returns.
func (l *lease) Check(ctx context.Context) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.pc == nil {
		if l.lost != nil {
			return l.lost
		}
		return store.ErrReleased
	}
	return l.keepalive(ctx, "keepalive failed")
}

// keepalive runs the check of Check (and of the socket watch's fire) on
// the pinned connection, with the watch off, and arms the watch again on
// success; on failure it destroys the connection and tells the listener,
// the failure described as what. The caller holds l.mu and l.pc is set.
func (l *lease) keepalive(ctx context.Context, what string) error {
	l.unwatch()
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(l.b.opts.releaseTimeout())
	}
	cctx, cancel := context.WithDeadline(context.WithoutCancel(ctx), deadline)
	defer cancel()
	_, err := l.pc.Conn().Exec(cctx, pgsql.Comment(l.key.String))
	if err == nil {
		l.watch()
		return nil
	}
	l.lost = fmt.Errorf("the connection holding it (session %d) was closed: %s: %w", l.pc.Conn().PgConn().PID(), what, err)
	l.news.tell(l.lost)
	destroy(l.pc, l.b.opts.releaseTimeout())
	l.pc = nil
	return l.lost
}

// PID is the server process id of the session holding the lock, or 0 once
// the lease is released. It is what pg_locks and pg_stat_activity show.
func (l *lease) PID() uint32 {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.pc == nil {
		return 0
	}
	return l.pc.Conn().PgConn().PID()
}
