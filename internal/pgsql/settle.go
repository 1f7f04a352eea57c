package pgsql

import (
	"context"
	"fmt"

	"github.com/kannuki-go/kannuki/store"
)

// SessionConn is the connection of a session-lock acquisition whose try or
// wait statement failed, as Settle needs it: what a driver can say about
// an error and do to the session. Its statements run on contexts of their
// own, bounded by the backend's ReleaseTimeout: the caller's may be gone.
type SessionConn interface {
	// Code is the SQLSTATE of err, or "" when the server sent no answer
	// (or the statement's bound cut it short).
	Code(err error) string
	// Closed reports that the driver gave up on the connection.
	Closed() bool
	// HeldByMe asks the session whether it holds the key in the
	// acquisition's mode (HeldByMe).
	HeldByMe() (bool, error)
	// Undo gives back a grant on the session and pools the connection;
	// when the unlock does not confirm, it destroys the connection.
	Undo()
	// Clear unlocks the key once whether the session holds it or not, and
	// pools the connection; when the unlock fails it destroys the
	// connection and reports false.
	Clear() bool
	// PutBack pools the connection: it holds nothing.
	PutBack()
	// Destroy closes the connection: its state is in doubt.
	Destroy()
}

// Settle applies the verdict table (verdict.go) to a try or a wait for a
// session lock that failed with err, on c, and leaves c pooled or
// destroyed, or holding the lock when granted is true: PostgreSQL can
// report lock_timeout although the lock was granted, and an error would
// then leave it held. folded says the wait's lock_timeout was ctx's
// deadline. The error is the caller's: ctx's when ctx ended, else a plain
// cause matching store.ErrCapacity, store.ErrNotAcquired or
// store.ErrDeadlock, or the driver's error.
func Settle(ctx context.Context, c SessionConn, err error, folded bool) (granted bool, _ error) {
	code := c.Code(err)
	if code == "" || c.Closed() {
		c.Destroy() // no answer: the session's state is unknown
		return false, endedOr(ctx, folded, err)
	}
	if code == CodeLockTableFull {
		c.Clear() // granted nothing; one unlock makes sure, as pg_locks would fail too
		return false, endedOr(ctx, folded, CapacityError(err))
	}
	held, herr := c.HeldByMe()
	switch {
	case herr != nil:
		// pg_locks could not be asked. When the session still answers (a
		// full lock table fails the query, say), one unlock makes sure it
		// holds nothing; otherwise the connection is destroyed.
		if c.Code(herr) == "" || c.Closed() {
			c.Destroy()
			return false, endedOr(ctx, folded, fmt.Errorf("%w (and checking the lock failed: %v)", err, herr))
		}
		if !c.Clear() {
			return false, endedOr(ctx, folded, fmt.Errorf("%w (and checking the lock failed: %v)", err, herr))
		}
	case held && ctx.Err() == nil && code == CodeLockNotAvailable:
		return true, nil
	case held:
		c.Undo()
	default:
		c.PutBack()
	}
	if ctx.Err() != nil || folded && code == CodeLockNotAvailable {
		return false, ended(ctx, folded) // a folded lock_timeout is ctx's deadline, on the server's clock
	}
	switch code {
	case CodeLockNotAvailable:
		return false, fmt.Errorf("lock still held when the wait ran out: %w", store.ErrNotAcquired)
	case CodeDeadlock:
		return false, fmt.Errorf("%w: %w", store.ErrDeadlock, err)
	case CodeQueryCanceled:
		// Not the caller's cancellation (ctx is alive): statement_timeout
		// or an administrator's pg_cancel_backend ended the wait.
		return false, fmt.Errorf("the server ended the wait: %w: %w", store.ErrNotAcquired, err)
	}
	return false, err
}

// endedOr is ctx's error when ctx has ended, else err.
func endedOr(ctx context.Context, folded bool, err error) error {
	if ctx.Err() != nil {
		return ended(ctx, folded)
	}
	return err
}

// ended is the error of a statement that ctx ended; folded says that its
// lock_timeout was ctx's deadline, which the server's clock may reach a
// hair before Go's timer does.
func ended(ctx context.Context, folded bool) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if folded {
		return context.DeadlineExceeded
	}
	return context.Canceled
}
