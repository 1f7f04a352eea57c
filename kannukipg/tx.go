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

// Transaction-scoped locks follow pgsql.AcquireTx, which kannukipgxv5
// shares; sqlTx runs its parameterless statements (XactTry, XactWait and
// the savepoint's) through ExecContext: the simple protocol on pgx/stdlib
// and lib/pq alike, one round trip, several statements in one text,
// nothing prepared, so they also work behind PgBouncer in transaction
// mode. The key appears only in a comment made safe by pgsql.Comment.

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
// leaves tx usable and without the lock, and so does a full lock table
// during the wait (SQLSTATE 53200, an error matching store.ErrCapacity);
// a try that fails for it has aborted tx. A wait costs two or three more
// round trips (the session's pid when ctx can be canceled, the wait, the
// end of the savepoint).
//
// AcquireTx returns nil exactly when tx holds the lock. The statements run
// detached from ctx's cancellation (both drivers answer a canceled context
// by closing the connection, which would kill tx); when ctx is canceled
// during a wait, a second connection of the Backend's pool sends
// pg_cancel_backend to tx's session, and a grant that won that race is
// rolled back with the savepoint before the cancellation is reported. Only
// when the pool has no connection to spare, or the cancel does not end the
// wait within ReleaseTimeout, does the driver's own cancellation run: the
// connection closes, tx is lost (the error says so; roll it back), and the
// server ends the session and whatever it held.
//
// A tx that was committed or rolled back (sql.ErrTxDone), that is no longer
// in a transaction block on the server (a COMMIT sent by hand), or that an
// earlier error aborted yields an error matching
// store.ErrInvalidArgument; AcquireTx never pretends to lock. Rolling
// back to a savepoint made before AcquireTx also releases the lock.
func (b *Backend) AcquireTx(ctx context.Context, tx *sql.Tx, key store.Key, req store.Request) error {
	switch {
	case b == nil || b.db == nil:
		return fmt.Errorf("%w: nil Backend or *sql.DB", store.ErrInvalidArgument)
	case tx == nil:
		return fmt.Errorf("%w: nil *sql.Tx", store.ErrInvalidArgument)
	}
	return pgsql.AcquireTx(ctx, &sqlTx{b: b, tx: tx}, key, req)
}

// sqlTx is tx as pgsql.AcquireTx runs it: every statement detached from
// ctx, a wait canceled with pg_cancel_backend from a second connection.
type sqlTx struct {
	b   *Backend
	tx  *sql.Tx
	pid int64 // tx's session, for pg_cancel_backend; set by PrepareWait
}

// Try sends CheckTx and the try in one round trip when the driver reports
// rows affected for SELECT (pgx/stdlib, lib/pq), bounded as the Backend's
// fast statements are.
func (t *sqlTx) Try(ctx context.Context, key store.Key, mode store.Mode) (bool, error) {
	fctx, cancel := t.b.fast(ctx, false)
	defer cancel()
	counts, err := t.b.countsRows(fctx, t.tx)
	switch {
	case err != nil:
		return false, err
	case counts:
		return execBool(fctx, t.tx, pgsql.CheckTx+"; "+execForm(pgsql.XactTry(key, mode)))
	}
	if _, err := t.tx.ExecContext(fctx, pgsql.CheckTx); err != nil {
		return false, err
	}
	return queryBool(fctx, t.tx, pgsql.XactTry(key, mode))
}

// PrepareWait reads the session's pid, which a cancel needs, when ctx can
// end.
func (t *sqlTx) PrepareWait(ctx context.Context) (err error) {
	if ctx.Done() != nil {
		t.pid, err = t.b.pid(ctx, t.tx)
	}
	return err
}

// Wait runs text with execDetached, as lease.wait does.
func (t *sqlTx) Wait(ctx context.Context, text string, ownDeadline bool) (aborted bool, err error) {
	return t.b.execDetached(ctx, t.tx, text, t.pid, ownDeadline)
}

func (t *sqlTx) Exec(ctx context.Context, text string) error {
	cctx, cancel := t.b.bounded(ctx, false)
	defer cancel()
	_, err := t.tx.ExecContext(cctx, text)
	return err
}

func (*sqlTx) Code(err error) string { return sqlState(err) }
func (*sqlTx) Gone(err error) bool   { return sessionGone(err) }
func (*sqlTx) Done(err error) bool   { return errors.Is(err, sql.ErrTxDone) }

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
	}
	if err := pgsql.CheckRequest(ctx, req); err != nil {
		return err
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
	return pgsql.RunTx(ctx, req, start, pgsql.TxRun[*sql.Tx]{
		Begin: func() (*sql.Tx, error) {
			tx, err := conn.BeginTx(context.WithoutCancel(ctx), txOpts)
			broken = err != nil
			return tx, err
		},
		Acquire: func(tx *sql.Tx, req store.Request) error { return b.AcquireTx(ctx, tx, key, req) },
		Rollback: func(tx *sql.Tx) error {
			err := tx.Rollback()
			if err == nil || errors.Is(err, sql.ErrTxDone) {
				return nil
			}
			broken = true
			return err
		},
		Commit: func(tx *sql.Tx) error {
			err := tx.Commit()
			if err != nil && !errors.Is(err, sql.ErrTxDone) && sqlState(err) == "" {
				broken = true // the outcome is unknown: do not pool the session
			}
			return err
		},
	}, fn)
}
