package kannukipg

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/kannuki-go/kannuki/store"

	"github.com/kannuki-go/kannuki"
	"github.com/kannuki-go/kannuki/internal/pgsql"
	"github.com/kannuki-go/kannuki/internal/sockbound"
	"github.com/kannuki-go/kannuki/internal/sockwatch"
)

// lease is one held lock and the connection pinned for it. The session
// lock lives exactly as long as that database session, so the connection
// goes back to the pool only once the unlock has said true, and is
// destroyed whenever that cannot be shown.
type lease struct {
	b    *Backend
	key  store.Key
	mode store.Mode

	mu   sync.Mutex
	conn *sql.Conn // nil once released or destroyed
	lost error     // set when the lock was found lost

	// sock is the connection's socket on pgx/stdlib (socket.go), nil
	// elsewhere; bound is its watchdog's view of the running statement.
	sock  net.Conn
	bound sockbound.Bound

	// The socket watch (watch.go): wsock is the socket watched while the
	// lease holds its lock and runs no statement (nil: not watched), armed
	// is true while watch is registered with the Backend's Poller. The
	// fields are set before the lease is handed out, then guarded by mu.
	wsock net.Conn
	watch sockwatch.Watch
	armed bool

	// listener is told, once (told), that the lock is lost (WatchLoss).
	listener store.LossListener
	told     bool
}

func (l *lease) variant() (shared, pair int) {
	return b2i(l.mode == store.ModeShared), b2i(l.key.Pair)
}

// try asks for the lock once. It runs to completion (bounded, not canceled
// with ctx) so that its outcome is always known: a try interrupted halfway
// could leave the lock granted on a connection we then cannot vouch for.
func (l *lease) try(ctx context.Context) (ok bool, err error) {
	err = l.bounded(ctx, false, func(ctx context.Context) error {
		ok, err = l.fastStmt(ctx, 0)
		return err
	})
	return ok, err
}

// bounded runs stmt, one statement on the pinned connection, to
// completion whatever ctx's cancellation says, bounded by
// Options.ReleaseTimeout, or by ctx's deadline when useDeadline is set and
// the deadline comes sooner. When the socket is known (pgx/stdlib,
// socket.go) and no sooner deadline applies, the bound is the socket
// watchdog and stmt runs on a context that cannot end; otherwise it is
// Backend.fast's context. A statement the watchdog cut short fails with
// errOverdue, whatever it returned: the socket is finished.
func (l *lease) bounded(ctx context.Context, useDeadline bool, stmt func(context.Context) error) error {
	if dl, has := ctx.Deadline(); l.sock != nil && (!useDeadline || !has || time.Until(dl) >= l.b.releaseTimeout) {
		l.startBound()
		err := stmt(context.WithoutCancel(ctx))
		if l.endBound() {
			if err != nil { // the driver's error, as text: the bound is ours, not a lost session
				return fmt.Errorf("%w (%s): %v", errOverdue, l.b.releaseTimeout, err)
			}
			return fmt.Errorf("%w (%s)", errOverdue, l.b.releaseTimeout)
		}
		return err
	}
	fctx, cancel := l.b.fast(ctx, useDeadline)
	defer cancel()
	return stmt(fctx)
}

// unlock gives the lock back on the pinned connection: true when it was held.
func (l *lease) unlock(ctx context.Context) (bool, error) {
	return l.fastStmt(ctx, 1)
}

// fastStmt runs the try (op 0) or the unlock (op 1) in the Backend's form.
func (l *lease) fastStmt(ctx context.Context, op int) (bool, error) {
	if l.b.form != FormLiteral {
		counts, err := l.b.countsRows(ctx, l.conn)
		if err != nil {
			return false, err
		}
		switch {
		case counts && l.b.form == FormPrepared:
			return l.b.prep.run(ctx, l.conn, op, l.key, l.mode)
		case counts:
			s, p := l.variant()
			return execBool(ctx, l.conn, fastSQL[op][s][p], boundArgs(l.key)...)
		case l.b.form == FormBound:
			s, p := l.variant()
			if op == 0 {
				return queryBool(ctx, l.conn, boundTry[s][p], boundArgs(l.key)...)
			}
			return queryBool(ctx, l.conn, boundUnlock[s][p], boundArgs(l.key)...)
		}
	}
	if op == 0 {
		return l.b.boolStmt(ctx, l.conn, pgsql.TryLock(l.key, l.mode))
	}
	return l.b.boolStmt(ctx, l.conn, pgsql.Unlock(l.key, l.mode))
}

// putBack returns the connection, which holds no lock, to the pool.
func (l *lease) putBack() {
	l.disarm()
	_ = l.conn.Close()
	l.conn = nil
}

// destroy closes the connection instead of returning it to the pool, which
// ends the database session and with it any lock it may hold. Returning
// driver.ErrBadConn from Raw makes database/sql close the driver connection.
func (l *lease) destroy() {
	l.disarm()
	_ = l.conn.Raw(func(dc any) error {
		if c, ok := dc.(driver.Conn); ok {
			l.b.prep.forget(c)
		}
		return driver.ErrBadConn
	})
	_ = l.conn.Close()
	l.conn = nil
}

// settler is the lease as pgsql.Settle sees it while its try or wait
// fails; its statements are bounded as the Backend's clean-up is.
func (l *lease) settler(ctx context.Context) *settler { return &settler{l: l, ctx: ctx} }

type settler struct {
	l   *lease
	ctx context.Context
}

func (s *settler) Code(err error) string {
	if errors.Is(err, errOverdue) || sessionGone(err) {
		return "" // cut short by the socket watchdog, or an answer that ended the session
	}
	return sqlState(err)
}

func (s *settler) Closed() bool { return false } // a broken connection fails with no SQLSTATE

func (s *settler) HeldByMe() (bool, error) {
	cctx, cancel := s.l.b.bounded(s.ctx, false)
	defer cancel()
	return s.l.b.boolStmt(cctx, s.l.conn, pgsql.HeldByMe(s.l.key, s.l.mode))
}

func (s *settler) Undo() {
	if ok, err := s.unlock(); err != nil || !ok {
		s.l.destroy()
		return
	}
	s.l.putBack()
}

func (s *settler) Clear() bool {
	if _, err := s.unlock(); err != nil {
		s.l.destroy()
		return false
	}
	s.l.putBack()
	return true
}

func (s *settler) unlock() (bool, error) {
	cctx, cancel := s.l.b.bounded(s.ctx, false)
	defer cancel()
	return s.l.unlock(cctx)
}

func (s *settler) PutBack() { s.l.putBack() }
func (s *settler) Destroy() { s.l.destroy() }

// Release implements store.Lease. It unlocks on the pinned connection
// (pg_advisory_unlock, or pg_advisory_unlock_shared for a shared lock) in
// one round trip, bounded by Options.ReleaseTimeout and not by ctx's
// cancellation. The connection returns to the pool only when the unlock
// returned true; otherwise it is destroyed. A false unlock or a session
// found dead gives an error matching store.ErrLockLost.
func (l *lease) Release(ctx context.Context) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	ctx, err := l.inUse(ctx)
	if err != nil {
		return err
	}
	l.disarm()
	var ok bool
	err = l.bounded(ctx, true, func(ctx context.Context) error {
		ok, err = l.unlock(ctx)
		return err
	})
	if err = l.unlocked(ok, err); err == nil {
		l.putBack()
	}
	return err
}

// Relock implements store.Relocker: the unlock of Release and, when it
// returned true, a try of the same key on the same connection, in one
// statement (internal/pgsql.Relock, with bound parameters in FormBound),
// bounded like Release. The new lease keeps the connection pinned.
func (l *lease) Relock(ctx context.Context) (store.Lease, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	ctx, err := l.inUse(ctx)
	if err != nil {
		return nil, err
	}
	l.disarm()
	var n int
	err = l.bounded(ctx, true, func(ctx context.Context) error {
		if l.b.form == FormBound { // pgx/stdlib: a constant text, cached per connection
			s, p := l.variant()
			return l.conn.QueryRowContext(ctx, pgsql.RelockBound[s][p], boundArgs(l.key)...).Scan(&n)
		}
		// One round trip on the simple protocol, whatever the driver.
		return l.conn.QueryRowContext(ctx, pgsql.Relock(l.key, l.mode)).Scan(&n)
	})
	if err != nil && notGranted(err) {
		// The try ran, so the unlock before it returned true (the CASE of
		// pgsql.Relock tries only then): the lock was held and is given
		// back, and the full lock table refused the try before it granted
		// anything. The session holds nothing: a release, no next lease.
		l.putBack()
		return nil, nil
	}
	if err = l.unlocked(n > 0, err); err != nil {
		return nil, err
	}
	if n == 1 { // another session had it first
		l.putBack()
		return nil, nil
	}
	next := &lease{b: l.b, key: l.key, mode: l.mode, conn: l.conn, sock: l.sock, wsock: l.wsock}
	l.conn = nil
	next.startWatch()
	return next, nil
}

// unlocked judges the answer of an unlock: nil when it returned true;
// otherwise it destroys the connection and says why, matching
// store.ErrLockLost when the lock was found not held or the session gone.
// The listener is told before it returns.
func (l *lease) unlocked(ok bool, err error) error {
	lost, failed := pgsql.UnlockVerdict(ok, err, err != nil && sessionGone(err))
	if failed == nil {
		return nil
	}
	if lost {
		failed = &kannuki.LockLostError{Key: l.key.String, Err: failed}
	}
	l.destroy()
	l.tell(failed)
	return failed
}

// inUse returns the error of a lease whose connection is gone (lost, or
// released), and ctx with nil replaced. Call with l.mu held.
func (l *lease) inUse(ctx context.Context) (context.Context, error) {
	switch {
	case l.conn == nil && l.lost != nil:
		return nil, l.lost
	case l.conn == nil:
		return nil, store.ErrReleased
	case ctx == nil:
		return context.Background(), nil
	}
	return ctx, nil
}

// Check implements store.Checker: one round trip on the pinned connection
// ("SELECT 1" with the key comment, which also keeps the key visible in
// pg_stat_activity). The session is alive exactly when it still holds the
// lock, since only this lease can unlock it. On failure the connection is
// destroyed, the listener told (WatchLoss) and the error matches
// store.ErrLockLost. ctx's deadline bounds the check; its cancellation
// does not interrupt it.
func (l *lease) Check(ctx context.Context) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	ctx, err := l.inUse(ctx)
	if err != nil {
		return err
	}
	l.disarm()
	if err := l.keepalive(ctx); err != nil {
		return l.lose(fmt.Errorf("keepalive failed, connection destroyed: %w", err))
	}
	l.arm()
	return nil
}
