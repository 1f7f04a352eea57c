package kannukipgxv5

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/kannuki-go/kannuki/store"

	"github.com/jackc/pgx/v5"
	"github.com/kannuki-go/kannuki/internal/pgsql"
)

var (
	_ store.TxBackend[pgx.Tx] = (*Backend)(nil)
	_ store.TxRunner[pgx.Tx]  = (*Backend)(nil)
)

// Transaction-scoped locks follow pgsql.AcquireTx, which kannukipg
// shares. pgxTx sends its statements (XactTry, XactWait and the
// savepoint's), which carry the id as a literal and the key in a comment,
// without arguments over the simple protocol: one round trip each,
// nothing prepared, so they work the same behind PgBouncer in transaction
// mode whatever the pool's query exec mode.

// AcquireTx implements store.TxBackend (kannuki.LockTx): it takes key
// with pg_advisory_xact_lock (or its _shared form) inside tx, so the lock
// is held until tx commits or rolls back; there is nothing to release, and
// it works behind PgBouncer in transaction pooling mode.
//
// A try (req.Wait 0), and the first step of every wait, is one round trip
// with pg_try_advisory_xact_lock. When the key is held and the request may
// wait, the wait runs inside a SAVEPOINT with its own lock_timeout (0 for
// WaitForever, so a lock_timeout the caller set does not cut it; the
// remaining wait or ctx's deadline, whichever comes first, otherwise), and
// the caller's lock_timeout is restored afterwards: SHOW lock_timeout reads
// the same before and after AcquireTx. A refused try, an expired wait
// (error matching store.ErrNotAcquired, or ctx.Err() when ctx's deadline
// ended it), a deadlock (store.ErrDeadlock) or a cancellation of ctx
// leaves tx usable and without the lock: the savepoint is rolled back and
// released. So does a full lock table during the wait (SQLSTATE 53200,
// an error matching store.ErrCapacity); a try that fails for it has
// aborted tx. A granted wait costs two more round trips (the wait, and
// the release of the savepoint).
//
// AcquireTx returns nil exactly when tx holds the lock. A cancellation of
// ctx during a wait sends a PostgreSQL cancel request instead of letting
// pgx close the connection (which would kill tx); when the grant won that
// race, AcquireTx rolls back to the savepoint, which gives the lock up, and
// reports the cancellation. A try whose grant is already in the
// transaction when ctx ends is kept and AcquireTx returns nil: a
// transaction lock cannot be given back before the transaction ends.
//
// tx must be an open transaction. A tx that was committed or rolled back
// (pgx.ErrTxClosed), whose connection is no longer in a transaction block
// (a COMMIT sent by hand), or that is aborted by an earlier error yields an
// error matching store.ErrInvalidArgument; AcquireTx never pretends to
// lock. Should the server or the network fail mid-wait, the error says so
// and tx is unusable: roll it back, which frees anything it held. A
// rollback to a savepoint of the caller's taken before AcquireTx (a nested
// pgx.Tx, for instance) also releases the lock.
func (b *Backend) AcquireTx(ctx context.Context, tx pgx.Tx, key store.Key, req store.Request) error {
	switch {
	case b == nil:
		return fmt.Errorf("%w: nil Backend", store.ErrInvalidArgument)
	case tx == nil:
		return fmt.Errorf("%w: nil pgx.Tx", store.ErrInvalidArgument)
	}
	c := tx.Conn()
	if c == nil {
		return fmt.Errorf("%w: %T has no connection", store.ErrInvalidArgument, tx)
	}
	return pgsql.AcquireTx(ctx, pgxTx{tx: tx, c: c, grace: b.opts.releaseTimeout()}, key, req)
}

// pgxTx is tx as pgsql.AcquireTx runs it: every statement over the
// simple protocol, guarded so that ctx's end sends a cancel request
// instead of letting pgx close the connection.
type pgxTx struct {
	tx    pgx.Tx
	c     *pgx.Conn
	grace time.Duration // Options.ReleaseTimeout
}

// Try runs the try, which ctx's end does not interrupt; pgx gives up on
// the connection, and so on tx, only if the server has not answered grace
// after that. Then it reads the transaction status.
func (t pgxTx) Try(ctx context.Context, key store.Key, mode store.Mode) (bool, error) {
	var granted bool
	settle, err := guarded(ctx, t.c, guard{grace: t.grace}, func(qctx context.Context) error {
		return t.tx.QueryRow(qctx, pgsql.XactTry(key, mode), pgx.QueryExecModeSimpleProtocol).Scan(&granted)
	})
	settle()
	if err != nil {
		return false, err
	}
	// A statement outside a transaction block runs in a transaction of its
	// own, which has already ended and taken the lock with it.
	if s := t.c.PgConn().TxStatus(); s != 'T' {
		return false, fmt.Errorf("%w (transaction status %q)", pgsql.ErrNotInTx, s)
	}
	return granted, nil
}

func (pgxTx) PrepareWait(context.Context) error { return nil }

// Wait runs text; ctx's end sends a cancel request, and pgx closes the
// connection only if the server has not answered grace after that.
func (t pgxTx) Wait(ctx context.Context, text string, ownDeadline bool) (aborted bool, err error) {
	settle, err := guarded(ctx, t.c, guard{interrupt: true, ownDeadline: ownDeadline, grace: t.grace}, func(qctx context.Context) error {
		_, err := t.tx.Exec(qctx, text, pgx.QueryExecModeSimpleProtocol)
		return err
	})
	settle() // no cancel request may hit the statements that follow
	return false, err
}

func (t pgxTx) Exec(ctx context.Context, text string) error {
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), t.grace)
	defer cancel()
	_, err := t.tx.Exec(cctx, text, pgx.QueryExecModeSimpleProtocol)
	return err
}

func (pgxTx) Code(err error) string { return serverCode(err) }
func (t pgxTx) Gone(error) bool     { return t.c.IsClosed() }
func (pgxTx) Done(err error) bool   { return errors.Is(err, pgx.ErrTxClosed) }

// afterWaitKey is pgsql's test hook: its func() value runs after a wait
// statement succeeded, before AcquireTx looks at ctx.
type afterWaitKey = pgsql.AfterWaitKey

// RunTx implements store.TxRunner (kannuki.InTx): it begins a
// transaction on a pool connection, takes key in it with AcquireTx, runs
// fn, and commits when fn returns nil. It rolls back when the lock is not
// granted (fn does not run; the error matches store.ErrNotAcquired), when
// fn returns an error, and when fn panics (the panic propagates). The lock
// ends with the transaction, which begins with req.TxOptions (a
// pgx.TxOptions, from kannuki.TxOptions) when set.
//
// Getting the connection follows the rules of Acquire: a try does not wait
// for a busy pool (store.ErrPoolExhausted) and a timed wait spends its
// budget on the connection first. The commit runs even if ctx ends while
// it is in flight (a commit interrupted half-way has an unknown outcome);
// if ctx has already ended when fn returns, RunTx rolls back instead. The
// rollback runs on a context of its own, bounded by Options.ReleaseTimeout.
// pgxpool destroys a connection that comes back still inside a transaction,
// so a failed commit or rollback never leaves a lock on a pooled session.
func (b *Backend) RunTx(ctx context.Context, key store.Key, req store.Request, fn func(context.Context, pgx.Tx) error) (err error) {
	start := time.Now()
	switch {
	case fn == nil:
		return fmt.Errorf("%w: nil function", store.ErrInvalidArgument)
	case b == nil || b.pool == nil:
		return fmt.Errorf("%w: nil pgxpool.Pool", store.ErrInvalidArgument)
	}
	if err := pgsql.CheckRequest(ctx, req); err != nil {
		return err
	}
	txOpts, err := pgxTxOptions(req.TxOptions)
	if err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	pc, err := b.conn(ctx, key, req.Wait, start)
	if err != nil {
		return err
	}
	defer pc.Release() // after the commit or rollback; pgxpool destroys a connection still in a transaction
	return pgsql.RunTx(ctx, req, start, pgsql.TxRun[pgx.Tx]{
		Begin:   func() (pgx.Tx, error) { return pc.BeginTx(ctx, txOpts) },
		Acquire: func(tx pgx.Tx, req store.Request) error { return b.AcquireTx(ctx, tx, key, req) },
		Rollback: func(tx pgx.Tx) error {
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), b.opts.releaseTimeout())
			defer cancel()
			err := tx.Rollback(rctx)
			if err == nil || errors.Is(err, pgx.ErrTxClosed) || pc.Conn().IsClosed() {
				return nil // rolled back, ended by fn, or ended with its connection
			}
			return err
		},
		Commit: func(tx pgx.Tx) error {
			settle, err := guarded(ctx, pc.Conn(), guard{grace: b.opts.releaseTimeout()}, tx.Commit)
			settle()
			return err
		},
	}, fn)
}

// pgxTxOptions returns v, the TxOptions of InTx, as the options of
// pgx's BeginTx: nil (the defaults), a pgx.TxOptions or a *pgx.TxOptions.
func pgxTxOptions(v any) (pgx.TxOptions, error) {
	switch o := v.(type) {
	case nil:
		return pgx.TxOptions{}, nil
	case pgx.TxOptions:
		return o, nil
	case *pgx.TxOptions:
		if o != nil {
			return *o, nil
		}
		return pgx.TxOptions{}, nil
	}
	return pgx.TxOptions{}, fmt.Errorf("%w: kannukipgxv5: TxOptions of type %T, want pgx.TxOptions", store.ErrInvalidArgument, v)
}
