package kannukipgxv5

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/kannuki-go/kannuki/store"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/kannuki-go/kannuki"
	"github.com/kannuki-go/kannuki/internal/pgsql"
)

// The uncontended path runs constant statements with bound parameters, so
// that pgx's per-connection statement cache (the default query mode) makes
// each of them one round trip after the first use on a connection. A text
// that changes with every key, such as one carrying the key in a comment,
// would miss the cache and cost a prepare per new key. Statements that wait
// (internal/pgsql.Lock) and the rare diagnostics carry the key in a comment
// and the id as a literal and go over the simple protocol: one round trip
// with no cache involved, and pg_stat_activity shows who waits on what.
//
// Each statement returns one row exactly when the function returned true,
// and boolStatement reads the answer from the command tag ("SELECT 1" or
// "SELECT 0") of an Exec: pgx then sets up no row reader and decodes no
// value, which is the cheapest form on the client, with the same single
// round trip. The WHERE clause has no FROM, so PostgreSQL evaluates it
// once (a one-time filter).
var (
	tryText = [2][2]string{ // [shared][pair]
		{"SELECT 1 WHERE pg_try_advisory_lock($1::bigint)", "SELECT 1 WHERE pg_try_advisory_lock($1::int4, $2::int4)"},
		{"SELECT 1 WHERE pg_try_advisory_lock_shared($1::bigint)", "SELECT 1 WHERE pg_try_advisory_lock_shared($1::int4, $2::int4)"},
	}
	unlockText = [2][2]string{
		{"SELECT 1 WHERE pg_advisory_unlock($1::bigint)", "SELECT 1 WHERE pg_advisory_unlock($1::int4, $2::int4)"},
		{"SELECT 1 WHERE pg_advisory_unlock_shared($1::bigint)", "SELECT 1 WHERE pg_advisory_unlock_shared($1::int4, $2::int4)"},
	}
)

// unlockStatement runs the unlock of k (relock false) or
// internal/pgsql.RelockBound (relock true), whose answer is 0 when the
// unlock returned false, 1 when it unlocked but another session had the
// lock first, 2 when it unlocked and took the lock again. unlocked is the
// unlock's answer; taken says whether the relock took the lock again.
func unlockStatement(ctx context.Context, c *pgx.Conn, k store.Key, m store.Mode, relock bool) (unlocked, taken bool, err error) {
	if !relock {
		unlocked, err = boolStatement(ctx, c, &unlockText, k, m)
		return unlocked, false, err
	}
	s := sharedIndex(m)
	var n int32
	if k.Pair {
		err = c.QueryRow(ctx, pgsql.RelockBound[s][1], k.K1, k.K2).Scan(&n)
	} else {
		err = c.QueryRow(ctx, pgsql.RelockBound[s][0], k.ID).Scan(&n)
	}
	return n > 0, n == 2, err
}

// judgeUnlock judges the answer of unlockStatement for key on a connection
// the watchdog bounded until deadline (fired: it failed the socket;
// closed: the connection is closed). cause is nil when the
// lock was released on a sound connection. Otherwise cause says why the
// connection must be destroyed, and err is what the release reports: nil
// when the lock was released before the watchdog gave up on the socket
// (a lock a relock took dies with the session), an error matching
// store.ErrLockLost when the session was gone or did not hold the lock,
// another error when whether the session still holds it is unknown. conn
// names the connection in that error.
func judgeUnlock(key string, ok bool, stmtErr error, fired bool, deadline time.Time, closed bool, conn string) (cause, err error) {
	if fired && stmtErr == nil && ok {
		return errOverdue, nil
	}
	// No answer in time, or the server refused the unlock (a
	// pg_cancel_backend, say): whether the lock is still on the session is
	// unknown. Otherwise an error means the session is gone (terminated,
	// network, server restart), and the lock with it.
	unknown := stmtErr != nil && (fired || !time.Now().Before(deadline) || isServerError(stmtErr) && !closed)
	lost, verdict := pgsql.UnlockVerdict(ok, stmtErr, !unknown)
	switch {
	case verdict == nil:
		return nil, nil
	case lost:
		return verdict, &kannuki.LockLostError{Key: key, Err: verdict}
	}
	return verdict, fmt.Errorf("on its %s: %w", conn, verdict)
}

// isServerError reports whether err carries an error the server sent. It
// is a function of its own so that the target errors.As needs is
// allocated only when an error is there to inspect: a variable declared
// in judgeUnlock escaped to the heap on every release.
func isServerError(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr)
}

// boolStatement runs one of the constant statements above for k and
// returns the function's answer.
func boolStatement(ctx context.Context, c *pgx.Conn, text *[2][2]string, k store.Key, m store.Mode) (bool, error) {
	var tag pgconn.CommandTag
	var err error
	s := sharedIndex(m)
	if k.Pair {
		tag, err = c.Exec(ctx, text[s][1], k.K1, k.K2)
	} else {
		tag, err = c.Exec(ctx, text[s][0], k.ID)
	}
	if err != nil {
		return false, err
	}
	switch n := tag.RowsAffected(); n {
	case 0, 1:
		return n == 1, nil
	default:
		return false, fmt.Errorf("%d rows from a lock statement (command tag %q)", n, tag.String())
	}
}

// sharedIndex is the first index of the [shared][pair] statement tables.
func sharedIndex(m store.Mode) int {
	if m == store.ModeShared {
		return 1
	}
	return 0
}

// guarded runs f, one statement on c, so that the end of ctx never
// interrupts it the way pgx does by default. pgx (v5.12.0) reacts to a
// canceled context by setting a past deadline on the socket, so the call
// returns at once, and then closes the connection in the background (cancel
// request, Terminate). For a lock statement that leaves the outcome
// unknown: the server may have granted the lock an instant before, and the
// dying session keeps it until it reads the Terminate, after Acquire has
// returned. Instead f runs on a context detached from ctx's cancellation
// and, when ctx ends:
//
//   - if g.interrupt is set (a statement that waits on the server), a
//     PostgreSQL cancel request is sent on a separate connection; the
//     statement then ends with its result (the grant won the race) or with
//     SQLSTATE 57014, and the connection stays usable either way. When the
//     statement's lock_timeout was cut to ctx's deadline (g.ownDeadline),
//     an expired deadline first gets deadlineSlack to end the statement by
//     itself, which spares the server the cancel connection;
//   - if f has still not returned g.grace later (server or network gone),
//     f's own context is canceled: pgx gives up on the connection and the
//     caller must destroy it.
//
// Either way the caller learns what happened and can undo a grant on the
// same session before reporting the cancellation.
//
// The returned settle waits until no cancel request is in flight any more.
// It must be called before the connection is handed to anyone else (a
// lease, the pool): a late cancel request could otherwise hit their next
// statement. The caller may first run its own clean-up statement (the
// undo of a grant): a cancel request that hits it makes it fail, and the
// caller then destroys the connection.
func guarded(ctx context.Context, c *pgx.Conn, g guard, f func(context.Context) error) (settle func(), err error) {
	if ctx.Done() == nil {
		return noop, f(ctx) // never canceled: nothing to guard
	}
	qctx, qcancel := context.WithCancel(context.WithoutCancel(ctx))
	defer qcancel()
	finished := make(chan struct{})
	watched := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		defer close(watched)
		if g.interrupt {
			if g.ownDeadline && errors.Is(ctx.Err(), context.DeadlineExceeded) {
				t := time.NewTimer(deadlineSlack)
				select {
				case <-finished:
				case <-t.C:
				}
				t.Stop()
			}
			select {
			case <-finished:
				return
			default:
			}
			cctx, cancel := context.WithTimeout(context.Background(), g.grace)
			_ = c.PgConn().CancelRequest(cctx) // failure is covered by the grace timer below
			cancel()
		}
		t := time.NewTimer(g.grace)
		defer t.Stop()
		select {
		case <-finished:
		case <-t.C:
			qcancel()
		}
	})
	err = f(qctx)
	close(finished)
	if stop() {
		return noop, err // ctx did not end while f ran
	}
	return func() { <-watched }, err
}

func noop() {}

// guard says how guarded treats the end of ctx.
type guard struct {
	interrupt   bool          // send a cancel request (the statement waits on the server)
	ownDeadline bool          // the statement's lock_timeout ends at ctx's deadline
	grace       time.Duration // how long to wait for the statement after that
}

// deadlineSlack is how long a wait whose lock_timeout was set to the
// context's deadline may overrun that deadline before a cancel request is
// sent anyway: lock_timeout has millisecond resolution and fires on the
// server's clock, and the answer needs a round trip.
const deadlineSlack = 100 * time.Millisecond
