package kannukimysql

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"sync"

	"github.com/kannuki-go/kannuki/keys"
	"github.com/kannuki-go/kannuki/store"

	"github.com/kannuki-go/kannuki"
	"github.com/kannuki-go/kannuki/internal/sockwatch"
)

// lease is one held lock and the connection pinned for it. A GET_LOCK lock
// lives as long as its server session, so the connection goes back to the
// pool only once RELEASE_LOCK has said 1, and is destroyed whenever that
// cannot be shown.
type lease struct {
	b    *Backend
	key  store.Key
	name string

	mu   sync.Mutex
	conn *sql.Conn // nil once released or destroyed
	sess *session  // the pinned connection's session (id, statements)
	lost error     // set when the lock was found lost
	// doubt is set when the connection was destroyed while its session
	// may still hold the lock: Release then ends the session for sure.
	doubt bool

	// The socket watch (watch.go): listener is the Locker's, told of a
	// loss once (told); w is armed while the lock is held for a listener
	// and no statement runs on the connection.
	listener store.LossListener
	told     bool
	w        sockwatch.Watch
}

// runGuarded executes statement kind on the pinned connection to
// completion, bounded by Options.ReleaseTimeout through a watchdog rather
// than a context: go-sql-driver/mysql watches a cancelable context with a
// goroutine it hands every statement to and back, which costs more than
// the rest of a lock cycle on a busy machine; a watchdog in the Backend's
// queue costs a mutex until it fires. If it fires, the session is ended from another connection
// (which ends the statement too) and the error matches
// context.DeadlineExceeded.
func (l *lease) runGuarded(ctx context.Context, kind stmtKind) (v int64, null bool, err error) {
	l.disarm() // the rule: no statement on a watched socket
	err = l.conn.Raw(func(dc any) error {
		if err := l.identify(ctx, dc); err != nil {
			return err
		}
		w := l.b.watch(ctx, l.sess.id)
		var err error
		v, null, err = l.sess.run(context.WithoutCancel(ctx), dc, kind, l.name)
		if w.stop() {
			return fmt.Errorf("no answer within %s, session %d ended: %w", l.b.opts.ReleaseTimeout, l.sess.id, context.DeadlineExceeded)
		}
		return err
	})
	return v, null, err
}

// identify learns the pinned connection's session on first use. No lock
// statement has run on it yet, so ctx may interrupt it.
func (l *lease) identify(ctx context.Context, dc any) error {
	if l.sess != nil {
		return nil
	}
	if s := l.b.knownSession(dc); s != nil {
		l.sess = s // no statement, so no bound needed
		return nil
	}
	bctx, cancel := context.WithTimeout(ctx, max(l.b.opts.ReleaseTimeout, minCleanup))
	defer cancel()
	s, err := l.b.session(bctx, dc)
	if err != nil {
		return err
	}
	l.sess = s
	return nil
}

// errDeadOnArrival marks a try that failed on a connection found closed
// before any lock statement was sent: Acquire may take another.
var errDeadOnArrival = errors.New("connection closed before use")

// try asks for the lock once. It runs to completion (not canceled with
// ctx; GET_LOCK(name, 0) does not wait on the server) so that its outcome
// is known. On error nothing is held and the connection is gone or back in
// the pool.
func (l *lease) try(ctx context.Context) (bool, error) {
	v, null, err := l.runGuarded(ctx, stmtTry)
	switch {
	case err == nil && !null:
		return v == 1, nil
	case err == nil:
		err = errors.New("GET_LOCK returned NULL (the session was killed, or a server error)")
	case isBadName(err):
		l.putBack()
		return false, fmt.Errorf("%w: %w", &keys.Error{Key: l.key.String, Reason: "the server rejected the lock name"}, err)
	case l.sess == nil && errors.Is(err, driver.ErrBadConn):
		// Nothing was sent on this connection.
		l.destroy()
		if cerr := ctxDone(ctx); cerr != nil {
			return false, l.ctxErr(cerr, nil)
		}
		return false, fmt.Errorf("try: %w: %w", errDeadOnArrival, err)
	}
	if cerr := l.settle(ctx, err); cerr != nil {
		err = fmt.Errorf("%w (clean-up: %w)", err, cerr)
	}
	if cerr := ctxDone(ctx); cerr != nil && connBroken(err) {
		return false, l.ctxErr(cerr, err)
	}
	if isDeadlock(err) {
		return false, fmt.Errorf("%w: %w", store.ErrDeadlock, err)
	}
	return false, fmt.Errorf("try: %w", err)
}

// settle leaves nothing held after a lock statement failed with err: on a
// connection still in step with the server, RELEASE_LOCK (the statement may
// have failed after the grant, for instance when killed) and then the
// connection is destroyed; on a broken one, the connection is destroyed and
// its session ended from another connection.
func (l *lease) settle(ctx context.Context, err error) error {
	if l.sess == nil {
		// The session could not even be identified: no lock statement ran.
		l.destroy()
		return nil
	}
	if !connBroken(err) {
		_, _, rerr := l.runGuarded(ctx, stmtRelease)
		if rerr == nil {
			// Held by this session or not, it holds nothing now. Destroy
			// rather than pool: whatever failed (a KILL QUERY, say) may
			// linger on the session.
			l.destroy()
			return nil
		}
	}
	return l.abandon(ctx)
}

// putBack returns the connection, which holds no lock, to the pool.
func (l *lease) putBack() {
	if l.conn != nil {
		l.disarm()
		_ = l.conn.Close()
		l.conn = nil
	}
}

// destroy closes the connection instead of returning it to the pool, which
// ends the server session and with it any lock it may hold. Returning
// driver.ErrBadConn from Raw makes database/sql close the driver
// connection.
func (l *lease) destroy() {
	if l.conn == nil {
		return
	}
	l.disarm()
	l.b.cache.drop(l.sess)
	_ = l.conn.Raw(func(any) error { return driver.ErrBadConn })
	_ = l.conn.Close()
	l.conn = nil
}

// abandon destroys the connection of a lock statement whose outcome is
// unknown (interrupted, or the connection failed) and makes sure its
// server session is gone before returning. Closing the socket is not
// enough: the server does not notice while the session waits in GET_LOCK,
// goes on waiting, takes the lock when it frees and only then finds the
// client gone, so for a moment a lock nobody asked for is held.
func (l *lease) abandon(ctx context.Context) error {
	l.destroy()
	if l.sess == nil {
		return nil
	}
	return l.b.endSession(ctx, l.sess.id)
}

// Release implements store.Lease: RELEASE_LOCK on the pinned connection,
// which returns to the pool only when the answer is 1. It works with a
// canceled ctx (bounded by Options.ReleaseTimeout). 0 or NULL mean the
// session no longer held the lock: the error matches store.ErrLockLost.
func (l *lease) Release(ctx context.Context) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.listener = nil // never told once released
	if _, err := l.giveBack(ctx, stmtRelease); err != nil {
		return err
	}
	l.putBack()
	return nil
}

// Relock implements store.Relocker: the release of Release and, when it
// said 1, GET_LOCK(name, 0) on the same session, in one statement
// (prepRelock), bounded like Release. The new lease keeps the connection
// pinned.
func (l *lease) Relock(ctx context.Context) (store.Lease, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.listener = nil // never told once released
	v, err := l.giveBack(ctx, stmtRelock)
	if err != nil {
		return nil, err
	}
	if v != 2 { // another session had it first
		l.putBack()
		return nil, nil
	}
	next := &lease{b: l.b, key: l.key, name: l.name, conn: l.conn, sess: l.sess}
	l.conn = nil
	return next, nil
}

// giveBack runs the release statement kind (stmtRelease or stmtRelock)
// and returns its answer when the lock was released; the connection is
// then still pinned. Otherwise the connection is gone and the error says
// why. Call with l.mu held.
func (l *lease) giveBack(ctx context.Context, kind stmtKind) (int64, error) {
	if ctx == nil {
		ctx = context.Background()
	}
	if l.conn == nil {
		if l.doubt {
			l.doubt = false
			if err := l.b.endSession(ctx, l.sess.id); err != nil {
				return 0, fmt.Errorf("%w (after: %w)", err, l.lost)
			}
		}
		if l.lost != nil {
			return 0, l.lost
		}
		return 0, store.ErrReleased
	}
	v, null, err := l.runGuarded(ctx, kind)
	switch {
	case err == nil && !null && v >= 1:
		return v, nil
	case err == nil:
		l.destroy()
		l.lost = &kannuki.LockLostError{Key: l.key.String, Err: fmt.Errorf("RELEASE_LOCK returned %s: this session no longer held the lock", nullOr(v, null))}
		return 0, l.lost
	}
	cerr := l.abandon(ctx)
	if errors.Is(err, context.DeadlineExceeded) && cerr == nil {
		// The server did not answer in time; its session is ended now.
		return 0, fmt.Errorf("%w (the session was ended instead)", err)
	}
	if cerr != nil {
		err = fmt.Errorf("%w (and ending the session failed: %w)", err, cerr)
	}
	l.lost = &kannuki.LockLostError{Key: l.key.String, Err: err}
	return 0, l.lost
}

// Check implements store.Checker: one round trip on the pinned connection
// asking whether this session still holds the lock. When it does not, or
// the connection fails, the connection is destroyed, the Locker's
// listener (WatchLoss) is told before Check returns, and the error matches
// store.ErrLockLost. A canceled ctx returns at once; otherwise the check
// runs to completion, bounded by Options.ReleaseTimeout (interrupting it
// would close the connection and lose the lock it is checking).
func (l *lease) Check(ctx context.Context) error {
	if ctx == nil {
		ctx = context.Background()
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.check(ctx)
}

// check is Check with l.mu held; the socket watch's confirmation too.
func (l *lease) check(ctx context.Context) error {
	if l.conn == nil {
		if l.lost != nil {
			return l.lost
		}
		return store.ErrReleased
	}
	v, null, err := l.runGuarded(ctx, stmtCheck)
	switch {
	case err == nil && !null && v == 1:
		l.arm()
		return nil
	case err == nil:
		l.destroy()
		l.lost = &kannuki.LockLostError{Key: l.key.String, Err: errors.New("keepalive: this session no longer holds the lock")}
	default:
		// The session may still hold the lock (a slow server, a stalled
		// network): Release will end it.
		l.destroy()
		l.doubt = true
		l.lost = &kannuki.LockLostError{Key: l.key.String, Err: fmt.Errorf("keepalive failed, connection destroyed: %w", err)}
	}
	l.tell()
	return l.lost
}

// nullOr formats a result that may be NULL.
func nullOr(v int64, null bool) string {
	if null {
		return "NULL"
	}
	return fmt.Sprint(v)
}
