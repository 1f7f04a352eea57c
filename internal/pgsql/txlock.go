package pgsql

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/kannuki-go/kannuki/store"
)

// The transaction-lock algorithm of kannukipg and kannukipgxv5 (their
// AcquireTx): every rule and every message is here once; a driver brings
// a TxConn, which runs statements and reads their errors its own way.
//
// The messages are plain causes: no "kannuki:" head and no key, which the
// Locker puts in front of them once.

// TxConn is one driver's open transaction, as AcquireTx needs it. Its
// statements run detached from ctx's cancellation: both drivers answer a
// canceled context by closing the connection, which would kill the
// transaction.
type TxConn interface {
	// Try proves that the session is in a transaction block and runs
	// XactTry(key, mode). ctx's end does not interrupt it (it never waits
	// on a lock), so that its outcome is known; the driver bounds it by
	// its ReleaseTimeout. A session found outside a transaction block is
	// an error matching ErrNotInTx, or one with CodeNoActiveTx.
	Try(ctx context.Context, key store.Key, mode store.Mode) (granted bool, err error)
	// PrepareWait does what a wait needs done first, in the transaction
	// and before its savepoint (kannukipg reads the session's pid for
	// pg_cancel_backend); nil when there is nothing to do.
	PrepareWait(ctx context.Context) error
	// Wait runs text, an XactWait. When ctx ends first the driver cancels
	// the statement on the server, not by closing the connection; when
	// ownDeadline is set, text's lock_timeout ends at ctx's deadline, and
	// the driver gives the server a moment to end the wait by itself
	// first. aborted reports that the cancellation failed and the driver
	// closed the connection instead, whatever the statement did. Once
	// Wait returns, no cancellation is on its way to the session any more.
	Wait(ctx context.Context, text string, ownDeadline bool) (aborted bool, err error)
	// Exec runs a clean-up statement, detached from ctx and bounded by the
	// driver's ReleaseTimeout.
	Exec(ctx context.Context, text string) error
	// Code returns the SQLSTATE of err, or "" when the server sent no
	// answer.
	Code(err error) string
	// Gone reports whether err shows the connection, and the transaction
	// with it, gone although the server answered.
	Gone(err error) bool
	// Done reports whether err says that the transaction was already
	// committed or rolled back on the driver's side (sql.ErrTxDone,
	// pgx.ErrTxClosed).
	Done(err error) bool
}

// ErrNotInTx is the cause of a transaction lock on a session that is not
// in a transaction block: the lock would end with its statement.
var ErrNotInTx = errors.New("the connection is not in an open transaction: a transaction lock would end with the statement")

// AfterWaitKey is a context key for tests only: its func() value runs after
// a wait statement succeeded, before AcquireTx looks at ctx, so a test can
// cancel ctx exactly there (a grant racing a cancellation).
type AfterWaitKey struct{}

// CheckRequest returns an error matching store.ErrInvalidArgument for what
// no lock request may carry: a nil ctx or an unknown mode.
func CheckRequest(ctx context.Context, req store.Request) error {
	switch {
	case ctx == nil:
		return fmt.Errorf("%w: nil context", store.ErrInvalidArgument)
	case req.Mode != store.ModeExclusive && req.Mode != store.ModeShared:
		return fmt.Errorf("%w: unknown lock mode %d", store.ErrInvalidArgument, req.Mode)
	}
	return nil
}

// AcquireTx takes key in c's transaction with pg_advisory_xact_lock (or
// its _shared form) and returns nil exactly when the transaction holds it.
//
// A try (req.Wait 0), and the first step of every wait, is c.Try. When
// the key is held and the request may wait, what is left of req.Wait is
// waited inside a SAVEPOINT with its own lock_timeout (0 for WaitForever;
// ctx's deadline when that comes first), and the caller's lock_timeout is
// restored. A refused try or an expired wait (store.ErrNotAcquired, or
// ctx's error when its deadline ended the wait), a deadlock
// (store.ErrDeadlock), a full lock table during a wait (store.ErrCapacity)
// or ctx's end leaves the transaction usable and without the lock: the
// savepoint is rolled back. A grant that raced ctx's end is rolled back
// with the savepoint before ctx's error is returned; a grant of the try
// is kept (a transaction lock cannot be given back before its transaction
// ends) and AcquireTx returns nil.
//
// A transaction that is over, outside a transaction block on the server
// or aborted by an earlier error yields an error matching
// store.ErrInvalidArgument. A try that fails for the lock table (53200)
// has aborted the transaction, and so has every error that says the
// transaction is unusable: the caller must roll it back.
func AcquireTx(ctx context.Context, c TxConn, key store.Key, req store.Request) error {
	start := time.Now()
	if err := CheckRequest(ctx, req); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	x := txLock{c: c, key: key, mode: req.Mode}
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

// txLock is one AcquireTx call.
type txLock struct {
	c    TxConn
	key  store.Key
	mode store.Mode
}

func (x *txLock) try(ctx context.Context) (bool, error) {
	granted, err := x.c.Try(ctx, x.key, x.mode)
	switch {
	case err == nil:
		return granted, nil
	case x.c.Code(err) == CodeLockTableFull:
		// The failed try aborted the caller's transaction: no savepoint
		// of ours is left to roll back to.
		return false, fmt.Errorf("the transaction is aborted (roll it back): %w", CapacityError(err))
	}
	return false, x.statementError(ctx, err)
}

// wait waits for the lock inside the savepoint; wait < 0 waits until
// granted or ctx ends.
func (x *txLock) wait(ctx context.Context, wait time.Duration) error {
	if err := x.c.PrepareWait(ctx); err != nil {
		return x.statementError(ctx, err)
	}
	if ctx.Err() != nil {
		return WaitEnded(ctx, false)
	}
	folded := false
	if dl, ok := ctx.Deadline(); ok {
		left := time.Until(dl)
		if left <= 0 {
			return WaitEnded(ctx, true)
		}
		if (wait < 0 || left <= wait) && left <= MaxLockTimeout {
			// ctx's deadline becomes lock_timeout: the server ends the
			// wait by itself, and no cancellation is needed.
			wait, folded = left, true
		}
	}
	aborted, err := x.c.Wait(ctx, XactWait(x.key, x.mode, wait), folded)
	if hook, ok := ctx.Value(AfterWaitKey{}).(func()); ok && err == nil && !aborted {
		hook()
	}

	if aborted {
		// The driver's own cancellation ran: the connection, and the
		// transaction with it, is closed or about to be, whatever the
		// statement did.
		lost := errors.New("the wait could not be canceled on the server, so the driver closed the transaction's connection: the transaction is unusable (roll it back)")
		if err != nil {
			lost = fmt.Errorf("%w: %w", lost, err)
		}
		return errors.Join(WaitEnded(ctx, folded), lost)
	}
	if err == nil {
		if ctx.Err() != nil {
			// The grant raced the cancellation (or came just after the
			// deadline): the caller gets an error, so the transaction
			// must not keep the lock. Rolling back to the savepoint gives
			// it up.
			return errors.Join(WaitEnded(ctx, folded), x.cleanup(ctx, RollbackSavepoint))
		}
		return x.cleanup(ctx, ReleaseSavepoint)
	}

	switch code := x.c.Code(err); {
	case code == "", x.c.Gone(err):
		return x.statementError(ctx, err) // no answer, or the connection is gone: no clean-up can run
	case code == CodeNoActiveTx, code == CodeTxAborted:
		return x.statementError(ctx, err) // no savepoint was made
	}
	return errors.Join(x.waitError(ctx, folded, err), x.cleanup(ctx, RollbackSavepoint))
}

// waitError is the error the caller sees for a wait statement that failed
// with err, an answer of the server, once the savepoint is rolled back.
func (x *txLock) waitError(ctx context.Context, folded bool, err error) error {
	if ctx.Err() != nil {
		return WaitEnded(ctx, folded)
	}
	switch x.c.Code(err) {
	case CodeLockNotAvailable:
		if folded {
			return WaitEnded(ctx, true) // the server's clock was ahead of ctx's timer
		}
		return fmt.Errorf("lock still held when the wait ran out: %w", store.ErrNotAcquired)
	case CodeDeadlock:
		return fmt.Errorf("%w: %w", store.ErrDeadlock, err)
	case CodeLockTableFull:
		return CapacityError(err) // the savepoint is rolled back: the transaction is usable
	case CodeQueryCanceled:
		// Not our cancellation (ctx is alive): statement_timeout or an
		// administrator's pg_cancel_backend ended the wait.
		return fmt.Errorf("the server ended the wait: %w: %w", store.ErrNotAcquired, err)
	}
	return fmt.Errorf("lock in a transaction: %w", err)
}

// cleanup ends the savepoint with text (ReleaseSavepoint or
// RollbackSavepoint); nil when that worked. A cancellation sent just as
// the wait ended can still reach the session late and fail the clean-up
// (57014); the savepoint then still exists, and a second try settles it.
func (x *txLock) cleanup(ctx context.Context, text string) error {
	var err error
	for range 2 {
		if err = x.c.Exec(ctx, text); err == nil {
			return nil
		}
		if x.c.Code(err) != CodeQueryCanceled || x.c.Gone(err) {
			break
		}
		text = RollbackSavepoint // the transaction may be aborted inside the savepoint
	}
	return fmt.Errorf("ending the savepoint failed, the transaction is unusable (roll it back): %w", err)
}

// statementError maps the failure of a statement that left no savepoint.
func (x *txLock) statementError(ctx context.Context, err error) error {
	code := x.c.Code(err)
	switch {
	case x.c.Done(err):
		return fmt.Errorf("%w: the transaction has already been committed or rolled back: %w", store.ErrInvalidArgument, err)
	case errors.Is(err, ErrNotInTx):
		return fmt.Errorf("%w: %w", store.ErrInvalidArgument, err)
	case code == CodeNoActiveTx:
		return fmt.Errorf("%w: %w: %w", store.ErrInvalidArgument, ErrNotInTx, err)
	case code == CodeTxAborted:
		return fmt.Errorf("%w: the transaction is aborted by an earlier error; roll it back: %w", store.ErrInvalidArgument, err)
	case code == "", x.c.Gone(err):
		// No answer from the server, or the driver gave up on the
		// connection: the transaction's state is unknown.
		err = fmt.Errorf("the transaction's connection failed, the transaction is unusable (roll it back): %w", err)
	default:
		err = fmt.Errorf("lock in a transaction: %w", err)
	}
	if cerr := ctx.Err(); cerr != nil {
		return errors.Join(cerr, err)
	}
	return err
}

// WaitEnded is the error of a wait that ctx ended; folded says that the
// wait's lock_timeout was set to ctx's deadline.
func WaitEnded(ctx context.Context, folded bool) error {
	err := ctx.Err()
	if err == nil && folded {
		// The server's lock_timeout, set to ctx's deadline, fired a hair
		// before Go's timer did.
		err = context.DeadlineExceeded
	}
	if err == nil {
		err = context.Canceled
	}
	return fmt.Errorf("wait: %w", err)
}
