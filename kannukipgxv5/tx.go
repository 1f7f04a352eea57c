package kannukipgxv5

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/kannuki-go/kannuki/store"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/kannuki-go/kannuki/internal/pgsql"
)

var (
	_ store.TxBackend[pgx.Tx] = (*Backend)(nil)
	_ store.TxRunner[pgx.Tx]  = (*Backend)(nil)
)

// Transaction-scoped locks are taken with the statements of internal/pgsql
// (XactTry, XactWait and the savepoint's), which carry the id as a literal
// and the key in a comment, sent without arguments over the simple
// protocol: one round trip each, nothing prepared, so they work the same
// behind PgBouncer in transaction mode whatever the pool's query exec mode.

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
// released. A granted wait costs two more round trips (the wait, and the
// release of the savepoint).
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
	start := time.Now()
	switch {
	case b == nil:
		return fmt.Errorf("%w: nil Backend", store.ErrInvalidArgument)
	case ctx == nil:
		return fmt.Errorf("%w: nil context", store.ErrInvalidArgument)
	case tx == nil:
		return fmt.Errorf("%w: nil pgx.Tx", store.ErrInvalidArgument)
	case req.Mode != store.ModeExclusive && req.Mode != store.ModeShared:
		return fmt.Errorf("%w: unknown lock mode %d", store.ErrInvalidArgument, req.Mode)
	}
	if err := ctx.Err(); err != nil {
		return ended(key, err)
	}
	c := tx.Conn()
	if c == nil {
		return fmt.Errorf("%w: %T has no connection", store.ErrInvalidArgument, tx)
	}
	x := txAcquisition{b: b, tx: tx, c: c, key: key, mode: req.Mode}
	granted, err := x.try(ctx)
	switch {
	case err != nil:
		return err
	case granted:
		return nil
	case req.Wait == 0:
		return fmt.Errorf("%w: %q is held", store.ErrNotAcquired, key.String)
	}
	if err := ctx.Err(); err != nil {
		return ended(key, err)
	}
	wait := req.Wait
	if wait > 0 {
		if wait -= time.Since(start); wait <= 0 {
			return fmt.Errorf("%w: %q is held", store.ErrNotAcquired, key.String)
		}
	}
	return x.wait(ctx, wait)
}

// txAcquisition is one AcquireTx call.
type txAcquisition struct {
	b    *Backend
	tx   pgx.Tx
	c    *pgx.Conn
	key  store.Key
	mode store.Mode
}

// try runs pg_try_advisory_xact_lock. ctx's end does not interrupt it (it
// never waits on a lock); pgx gives up on the connection, and so on tx,
// only if the server has not answered Options.ReleaseTimeout after that.
func (x *txAcquisition) try(ctx context.Context) (bool, error) {
	var granted bool
	settle, err := guarded(ctx, x.c, guard{grace: x.b.opts.releaseTimeout()}, func(qctx context.Context) error {
		return x.tx.QueryRow(qctx, pgsql.XactTry(x.key, x.mode), pgx.QueryExecModeSimpleProtocol).Scan(&granted)
	})
	settle()
	if err != nil {
		return false, x.statementError(ctx, err)
	}
	// A statement outside a transaction block runs in a transaction of its
	// own, which has already ended and taken the lock with it.
	if s := x.c.PgConn().TxStatus(); s != 'T' {
		return false, x.notInTx(s)
	}
	return granted, nil
}

// wait waits for the lock inside the savepoint; wait < 0 waits until
// granted or ctx ends.
func (x *txAcquisition) wait(ctx context.Context, wait time.Duration) error {
	grace := x.b.opts.releaseTimeout()
	g := guard{interrupt: true, grace: grace}
	if dl, ok := ctx.Deadline(); ok {
		// ctx's deadline becomes lock_timeout when it comes first, so the
		// server ends the wait by itself and no cancel request is needed.
		if left := time.Until(dl); (wait < 0 || left <= wait) && left <= pgsql.MaxLockTimeout {
			wait, g.ownDeadline = max(left, time.Millisecond), true
		}
	}
	text := pgsql.XactWait(x.key, x.mode, wait)
	settle, err := guarded(ctx, x.c, g, func(qctx context.Context) error {
		_, err := x.tx.Exec(qctx, text, pgx.QueryExecModeSimpleProtocol)
		return err
	})
	settle() // no cancel request may hit the statements below
	if hook, ok := ctx.Value(afterWaitKey{}).(func()); ok && err == nil {
		hook()
	}
	if err == nil {
		if cerr := ctx.Err(); cerr != nil {
			// The grant raced the cancellation (or came just after the
			// deadline): the caller gets an error, so it must not hold
			// the lock. Rolling back to the savepoint gives it up.
			if rerr := x.cleanup(pgsql.RollbackSavepoint); rerr != nil {
				return errors.Join(ended(x.key, cerr), rerr)
			}
			return ended(x.key, cerr)
		}
		if rerr := x.cleanup(pgsql.ReleaseSavepoint); rerr != nil {
			return rerr
		}
		return nil
	}

	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || x.c.IsClosed() {
		return x.statementError(ctx, err) // no answer, or pgx closed the connection: tx is gone
	}
	switch pgErr.Code {
	case pgsql.CodeNoActiveTx, pgsql.CodeTxAborted:
		return x.statementError(ctx, err) // no savepoint was made
	}
	if rerr := x.cleanup(pgsql.RollbackSavepoint); rerr != nil {
		if cerr := ctx.Err(); cerr != nil {
			return errors.Join(ended(x.key, cerr), rerr)
		}
		return errors.Join(fmt.Errorf("kannuki: pgx: lock %q in a transaction: %w", x.key.String, err), rerr)
	}
	if cerr := ctx.Err(); cerr != nil {
		return ended(x.key, cerr)
	}
	if g.ownDeadline && pgErr.Code == pgsql.CodeLockNotAvailable {
		return ended(x.key, context.DeadlineExceeded) // the server's clock was ahead
	}
	switch pgErr.Code {
	case pgsql.CodeLockNotAvailable:
		return fmt.Errorf("%w: %q still held when the wait ran out", store.ErrNotAcquired, x.key.String)
	case pgsql.CodeDeadlock:
		return fmt.Errorf("%w: %q: %w", store.ErrDeadlock, x.key.String, err)
	case pgsql.CodeQueryCanceled:
		// Not our cancel request (ctx is alive): statement_timeout or
		// pg_cancel_backend ended the wait.
		return fmt.Errorf("%w: %q: the server ended the wait: %w", store.ErrNotAcquired, x.key.String, err)
	}
	return fmt.Errorf("kannuki: pgx: lock %q in a transaction: %w", x.key.String, err)
}

// cleanup ends the savepoint with text (pgsql.ReleaseSavepoint or
// pgsql.RollbackSavepoint) on a context of its own: the caller's may be
// gone, and the transaction must not be left inside the savepoint. A
// cancel request that raced the wait has been answered by now (settle),
// but its signal may in theory still reach the server process late and
// hit the clean-up (57014); the savepoint then still exists, and a second
// try settles it.
func (x *txAcquisition) cleanup(text string) error {
	ctx, cancel := context.WithTimeout(context.Background(), x.b.opts.releaseTimeout())
	defer cancel()
	var err error
	for range 2 {
		if _, err = x.tx.Exec(ctx, text, pgx.QueryExecModeSimpleProtocol); err == nil {
			return nil
		}
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) || pgErr.Code != pgsql.CodeQueryCanceled || x.c.IsClosed() {
			break
		}
		text = pgsql.RollbackSavepoint // the savepoint is still there; the transaction may be aborted inside it
	}
	return fmt.Errorf("kannuki: pgx: lock %q: ending the savepoint failed, the transaction is unusable (roll it back): %w", x.key.String, err)
}

// statementError maps the failure of a statement that made no savepoint.
func (x *txAcquisition) statementError(ctx context.Context, err error) error {
	var pgErr *pgconn.PgError
	switch {
	case errors.Is(err, pgx.ErrTxClosed):
		return fmt.Errorf("%w: lock %q: the transaction has already been committed or rolled back: %w", store.ErrInvalidArgument, x.key.String, err)
	case errors.As(err, &pgErr) && pgErr.Code == pgsql.CodeNoActiveTx:
		return x.notInTx('I')
	case errors.As(err, &pgErr) && pgErr.Code == pgsql.CodeTxAborted:
		return fmt.Errorf("%w: lock %q: the transaction is aborted by an earlier error; roll it back: %w", store.ErrInvalidArgument, x.key.String, err)
	}
	if !errors.As(err, &pgErr) || x.c.IsClosed() {
		// No answer from the server, or pgx gave up on the connection.
		err = fmt.Errorf("kannuki: pgx: lock %q: the transaction's connection failed, the transaction is unusable (roll it back): %w", x.key.String, err)
	} else {
		err = fmt.Errorf("kannuki: pgx: lock %q in a transaction: %w", x.key.String, err)
	}
	if cerr := ctx.Err(); cerr != nil {
		return errors.Join(ended(x.key, cerr), err)
	}
	return err
}

func (x *txAcquisition) notInTx(status byte) error {
	return fmt.Errorf("%w: lock %q: the connection is not in an open transaction (status %q): a transaction lock would end with the statement",
		store.ErrInvalidArgument, x.key.String, status)
}

// afterWaitKey is a context key for tests only: its func() value runs after
// a wait statement succeeded, before AcquireTx looks at ctx, so a test can
// cancel ctx exactly there (a grant racing a cancellation).
type afterWaitKey struct{}

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
	case ctx == nil:
		return fmt.Errorf("%w: nil context", store.ErrInvalidArgument)
	case req.Mode != store.ModeExclusive && req.Mode != store.ModeShared:
		return fmt.Errorf("%w: unknown lock mode %d", store.ErrInvalidArgument, req.Mode)
	}
	txOpts, err := pgxTxOptions(req.TxOptions)
	if err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return ended(key, err)
	}
	pc, err := b.conn(ctx, key, req.Wait, start)
	if err != nil {
		return err
	}
	defer pc.Release() // after the commit or rollback; pgxpool destroys a connection still in a transaction
	tx, err := pc.BeginTx(ctx, txOpts)
	if err != nil {
		return fmt.Errorf("kannuki: pgx: begin transaction: %w", err)
	}
	rollback := func() error {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), b.opts.releaseTimeout())
		defer cancel()
		err := tx.Rollback(rctx)
		if err == nil || errors.Is(err, pgx.ErrTxClosed) || pc.Conn().IsClosed() {
			return nil // rolled back, ended by fn, or ended with its connection
		}
		return fmt.Errorf("kannuki: pgx: rollback: %w", err)
	}
	if req.Wait > 0 {
		req.Wait = max(req.Wait-time.Since(start), 0) // the connection's share of the budget is spent
	}
	return pgsql.RunTxBody(ctx, tx, pgsql.TxSteps{
		Acquire:  func() error { return b.AcquireTx(ctx, tx, key, req) },
		Rollback: rollback,
		Commit: func() error {
			settle, cerr := guarded(ctx, pc.Conn(), guard{grace: b.opts.releaseTimeout()}, tx.Commit)
			settle()
			if cerr != nil {
				return fmt.Errorf("kannuki: pgx: commit: %w", cerr)
			}
			return nil
		},
		Prefix: "kannuki: pgx: ",
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
