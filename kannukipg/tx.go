package kannukipg

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/kannuki-go/kannuki/store"

	"github.com/kannuki-go/kannuki/internal/pgsql"
	"github.com/kannuki-go/kannuki/internal/txopts"
)

var (
	_ store.TxBackend[*sql.Tx] = (*Backend)(nil)
	_ store.TxRunner[*sql.Tx]  = (*Backend)(nil)
)

// Transaction-scoped locks run the parameterless statements of
// internal/pgsql (XactTry, XactWait and the savepoint's) through
// ExecContext: the simple protocol on pgx/stdlib and lib/pq alike, one
// round trip, several statements in one text, nothing prepared, so they
// also work behind PgBouncer in transaction mode. The key appears only in a comment
// made safe by pgsql.Comment.

// AcquireTx implements store.TxBackend (kannuki.LockTx): it takes key
// with pg_advisory_xact_lock (or its _shared form) inside tx, so the lock
// is held until tx commits or rolls back; there is nothing to release, and
// it works behind PgBouncer in transaction pooling mode. tx must be a
// transaction on the same database as the Backend's pool, which provides
// the connection that cancels a wait.
//
// A try (req.Wait 0), and the first step of every wait, is one round trip:
// a SAVEPOINT that proves tx is open on the server, and
// pg_try_advisory_xact_lock. When the key is held and the request may
// wait, the wait runs inside a SAVEPOINT with its own lock_timeout (0 for
// WaitForever, so a lock_timeout the caller set does not cut it; the
// remaining wait or ctx's deadline, whichever comes first, otherwise), and
// the caller's lock_timeout is restored afterwards: SHOW lock_timeout
// reads the same before and after. A refused try, an expired wait (an
// error matching store.ErrNotAcquired, or ctx.Err() when ctx's deadline
// ended it), a deadlock (store.ErrDeadlock) or a cancellation of ctx
// leaves tx usable and without the lock. A wait costs two or three more
// round trips (the session's pid when ctx can be canceled, the wait, the
// end of the savepoint).
//
// AcquireTx returns nil exactly when tx holds the lock. The statements run
// detached from ctx's cancellation (both drivers answer a canceled context
// by closing the connection, which would kill tx); when ctx is canceled
// during a wait, a second connection of the Backend's pool sends
// pg_cancel_backend to tx's session, and a grant that won that race is
// rolled back with the savepoint before the cancellation is reported. Only
// when the pool has no connection to spare does the driver's own
// cancellation run: the connection closes, tx is lost (the error says so;
// roll it back), and the server ends the session and whatever it held.
//
// A tx that was committed or rolled back (sql.ErrTxDone), that is no longer
// in a transaction block on the server (a COMMIT sent by hand), or that an
// earlier error aborted yields an error matching
// store.ErrInvalidArgument; AcquireTx never pretends to lock. Rolling
// back to a savepoint made before AcquireTx also releases the lock.
func (b *Backend) AcquireTx(ctx context.Context, tx *sql.Tx, key store.Key, req store.Request) error {
	start := time.Now()
	switch {
	case b == nil || b.db == nil:
		return fmt.Errorf("%w: nil Backend or *sql.DB", store.ErrInvalidArgument)
	case ctx == nil:
		return fmt.Errorf("%w: nil context", store.ErrInvalidArgument)
	case tx == nil:
		return fmt.Errorf("%w: nil *sql.Tx", store.ErrInvalidArgument)
	case req.Mode != store.ModeExclusive && req.Mode != store.ModeShared:
		return fmt.Errorf("%w: unknown lock mode %d", store.ErrInvalidArgument, req.Mode)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	x := txAcquisition{b: b, tx: tx, key: key, mode: req.Mode}
	granted, err := x.try(ctx)
	switch {
	case err != nil:
		return err
	case granted:
		return nil
	case req.Wait == 0:
		return fmt.Errorf("held elsewhere: %w", store.ErrNotAcquired)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	wait := req.Wait
	if wait > 0 {
		if wait -= time.Since(start); wait <= 0 {
			return fmt.Errorf("lock still held after %s: %w", req.Wait, store.ErrNotAcquired)
		}
	}
	return x.wait(ctx, wait)
}

// txAcquisition is one AcquireTx call.
type txAcquisition struct {
	b    *Backend
	tx   *sql.Tx
	key  store.Key
	mode store.Mode
}

// try checks that tx is open and runs pg_try_advisory_xact_lock, in one
// round trip when the driver reports rows affected for SELECT (pgx/stdlib,
// lib/pq). It runs to completion whatever ctx does (bounded as the
// Backend's fast statements are), so that its outcome is always known.
func (x *txAcquisition) try(ctx context.Context) (bool, error) {
	fctx, cancel := x.b.fast(ctx, false)
	defer cancel()
	counts, err := x.b.countsRows(fctx, x.tx)
	if err != nil {
		return false, x.statementError(ctx, err)
	}
	var granted bool
	if counts {
		granted, err = execBool(fctx, x.tx, pgsql.CheckTx+"; "+execForm(pgsql.XactTry(x.key, x.mode)))
	} else {
		if _, err = x.tx.ExecContext(fctx, pgsql.CheckTx); err == nil {
			granted, err = queryBool(fctx, x.tx, pgsql.XactTry(x.key, x.mode))
		}
	}
	if err != nil && notGranted(err) {
		// The failed try aborted the caller's transaction: no savepoint
		// of ours is left to roll back to.
		return false, fmt.Errorf("%w (the transaction is aborted: roll it back)", capacityError(x.key, err))
	}
	if err != nil {
		return false, x.statementError(ctx, err)
	}
	return granted, nil
}

// wait waits for the lock inside the savepoint; wait < 0 waits until
// granted or ctx ends. Like lease.wait it runs the statement with
// execDetached: detached from ctx, whose end sends pg_cancel_backend from
// a second connection.
func (x *txAcquisition) wait(ctx context.Context, wait time.Duration) error {
	folded := false
	if dl, ok := ctx.Deadline(); ok {
		left := time.Until(dl)
		if left <= 0 {
			return context.DeadlineExceeded
		}
		if (wait < 0 || left < wait) && left <= pgsql.MaxLockTimeout {
			// The server ends the wait at the deadline by itself.
			wait, folded = left, true
		}
	}
	q := pgsql.XactWait(x.key, x.mode, wait)

	var pid int64
	if ctx.Done() != nil {
		var err error
		if pid, err = x.b.pid(ctx, x.tx); err != nil {
			return x.statementError(ctx, err)
		}
		if err := ctx.Err(); err != nil {
			return err
		}
	}
	aborted, err := x.b.execDetached(ctx, x.tx, q, pid, folded)
	if hook, ok := ctx.Value(afterWaitKey{}).(func()); ok && err == nil && !aborted {
		hook()
	}

	if aborted {
		// The driver's own cancellation ran: the connection, and tx with
		// it, is closed or about to be, whatever the statement did.
		return errors.Join(x.ctxErr(ctx, folded),
			fmt.Errorf("no spare connection to cancel the wait, the driver closed the transaction's connection (roll it back): %w", err))
	}
	if err == nil {
		if ctx.Err() != nil {
			// The grant raced the cancellation: the caller gets an error,
			// so the transaction must not keep the lock.
			if rerr := x.cleanup(ctx, pgsql.RollbackSavepoint); rerr != nil {
				return errors.Join(x.ctxErr(ctx, folded), rerr)
			}
			return x.ctxErr(ctx, folded)
		}
		return x.cleanup(ctx, pgsql.ReleaseSavepoint)
	}

	code := sqlState(err)
	switch {
	case code == "", code == pgsql.CodeNoActiveTx, code == pgsql.CodeTxAborted:
		return x.statementError(ctx, err) // no answer, or no savepoint was made
	}
	if rerr := x.cleanup(ctx, pgsql.RollbackSavepoint); rerr != nil {
		return errors.Join(x.mapWaitError(ctx, folded, code, err), rerr)
	}
	return x.mapWaitError(ctx, folded, code, err)
}

// mapWaitError turns the failure of the wait statement into the error the
// caller sees, once the savepoint is rolled back.
func (x *txAcquisition) mapWaitError(ctx context.Context, folded bool, code string, err error) error {
	if ctx.Err() != nil {
		return x.ctxErr(ctx, folded)
	}
	switch code {
	case pgsql.CodeLockNotAvailable:
		if folded {
			return x.ctxErr(ctx, true) // the server's clock was ahead of ctx's timer
		}
		return fmt.Errorf("lock still held when the wait ran out: %w", store.ErrNotAcquired)
	case pgsql.CodeDeadlock:
		return fmt.Errorf("%w: %w", store.ErrDeadlock, err)
	case codeLockTableFull:
		return capacityError(x.key, err) // the savepoint is rolled back: tx is usable
	case pgsql.CodeQueryCanceled:
		// Not our cancel (ctx is alive): statement_timeout or an
		// administrator's pg_cancel_backend ended the wait.
		return fmt.Errorf("the server ended the wait: %w: %w", store.ErrNotAcquired, err)
	}
	return fmt.Errorf("wait for %q in a transaction: %w", x.key.String, err)
}

// ctxErr is the error of a wait that ctx ended.
func (x *txAcquisition) ctxErr(ctx context.Context, folded bool) error {
	return waitEnded(ctx, x.key, folded)
}

// cleanup ends the savepoint with text (pgsql.ReleaseSavepoint or
// pgsql.RollbackSavepoint), detached from ctx and bounded by
// ReleaseTimeout. A pg_cancel_backend that was sent just as the wait ended
// can still reach the session late and fail the clean-up (57014); the
// savepoint then still exists, and a second try settles it.
func (x *txAcquisition) cleanup(ctx context.Context, text string) error {
	cctx, cancel := x.b.bounded(ctx, false)
	defer cancel()
	var err error
	for range 2 {
		if _, err = x.tx.ExecContext(cctx, text); err == nil {
			return nil
		}
		if sqlState(err) != pgsql.CodeQueryCanceled {
			break
		}
		text = pgsql.RollbackSavepoint // the transaction may be aborted inside the savepoint
	}
	return fmt.Errorf("ending the savepoint failed, the transaction is unusable (roll it back): %w", err)
}

// statementError maps the failure of a statement that left no savepoint.
func (x *txAcquisition) statementError(ctx context.Context, err error) error {
	switch {
	case errors.Is(err, sql.ErrTxDone):
		return fmt.Errorf("%w: the transaction has already been committed or rolled back: %w", store.ErrInvalidArgument, err)
	case sqlState(err) == pgsql.CodeNoActiveTx:
		return fmt.Errorf("%w: the connection is not in an open transaction: a transaction lock would end with the statement: %w",
			store.ErrInvalidArgument, err)
	case sqlState(err) == pgsql.CodeTxAborted:
		return fmt.Errorf("%w: the transaction is aborted by an earlier error; roll it back: %w", store.ErrInvalidArgument, err)
	}
	if cerr := ctx.Err(); cerr != nil {
		return errors.Join(fmt.Errorf("%w", cerr), err)
	}
	return fmt.Errorf("lock in a transaction: %w", err)
}

// afterWaitKey is a context key for tests only: its func() value runs after
// a wait statement succeeded, before AcquireTx looks at ctx, so a test can
// cancel ctx exactly there (a grant racing a cancellation).
type afterWaitKey struct{}

// RunTx implements store.TxRunner (kannuki.InTx): it begins a
// transaction on a connection of the Backend's pool, takes key in it with
// AcquireTx, runs fn, and commits when fn returns nil. It rolls back when
// the lock is not granted (fn does not run; the error matches
// store.ErrNotAcquired), when fn returns an error, when ctx has ended by
// the time fn returns, and when fn panics (the panic propagates). The lock
// ends with the transaction, which begins with req.TxOptions (a
// *sql.TxOptions, from kannuki.TxOptions) when set.
//
// Getting the connection follows Acquire's rules (Options.ConnWait; an
// exhausted pool gives an error matching ErrNoConnection and
// store.ErrNotAcquired). The transaction is not bound to ctx: ctx's
// cancellation does not make database/sql roll it back behind RunTx's
// back (fn's statements still see ctx). A connection whose rollback fails
// is destroyed, never pooled.
func (b *Backend) RunTx(ctx context.Context, key store.Key, req store.Request, fn func(context.Context, *sql.Tx) error) (err error) {
	switch {
	case fn == nil:
		return fmt.Errorf("%w: nil function", store.ErrInvalidArgument)
	case b == nil || b.db == nil:
		return fmt.Errorf("%w: nil Backend or *sql.DB", store.ErrInvalidArgument)
	case ctx == nil:
		return fmt.Errorf("%w: nil context", store.ErrInvalidArgument)
	case req.Mode != store.ModeExclusive && req.Mode != store.ModeShared:
		return fmt.Errorf("%w: unknown lock mode %d", store.ErrInvalidArgument, req.Mode)
	}
	txOpts, err := txopts.SQL(req.TxOptions, "kannukipg")
	if err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	start := time.Now()
	conn, err := b.conn(ctx, req.Wait)
	if err != nil {
		return err
	}
	broken := false
	defer func() {
		if broken {
			l := lease{b: b, conn: conn}
			l.destroy()
			return
		}
		_ = conn.Close() // the transaction has ended: the session holds no transaction lock
	}()
	tx, err := conn.BeginTx(context.WithoutCancel(ctx), txOpts)
	if err != nil {
		broken = true
		return fmt.Errorf("begin transaction: %w", err)
	}
	rollback := func() error {
		err := tx.Rollback()
		if err == nil || errors.Is(err, sql.ErrTxDone) {
			return nil
		}
		broken = true
		return fmt.Errorf("rollback: %w", err)
	}
	if req.Wait > 0 {
		req.Wait = max(req.Wait-time.Since(start), 0) // the connection's share of the budget is spent
	}
	return pgsql.RunTxBody(ctx, tx, pgsql.TxSteps{
		Acquire:  func() error { return b.AcquireTx(ctx, tx, key, req) },
		Rollback: rollback,
		Commit: func() error {
			cerr := tx.Commit()
			if cerr == nil {
				return nil
			}
			if !errors.Is(cerr, sql.ErrTxDone) && sqlState(cerr) == "" {
				broken = true // the outcome is unknown: do not pool the session
			}
			return fmt.Errorf("commit: %w", cerr)
		},
		Prefix: "kannuki: ",
	}, fn)
}
