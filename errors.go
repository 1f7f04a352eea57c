package kannuki

import (
	"fmt"
	"time"

	"github.com/kannuki-go/kannuki/store"
)

// Sentinel errors, to match with errors.Is. They are the values of the
// package store, which backends return, so a backend's error matches them
// too. Every error the Locker returns starts with "kannuki:", once.
var (
	// ErrNotAcquired: the lock was not granted (held elsewhere, timed out,
	// or the context ended while waiting). See NotAcquiredError.
	ErrNotAcquired = store.ErrNotAcquired
	// ErrLockLost: a held lock was lost (connection killed, database
	// restarted, session ended). The work done under it may have overlapped
	// with another holder. See LockLostError.
	ErrLockLost = store.ErrLockLost
	// ErrDeadlock: the database detected a deadlock, or the call would
	// deadlock (upgrading a shared lock this goroutine holds to exclusive).
	ErrDeadlock = store.ErrDeadlock
	// ErrUnsupported: the backend cannot do what was asked (shared locks on
	// MySQL, for example).
	ErrUnsupported = store.ErrUnsupported
	// ErrInvalidKey: the key is empty, too long, not UTF-8, contains NUL, or
	// does not fit the key scheme. See keys.Error.
	ErrInvalidKey = store.ErrInvalidKey
	// ErrInvalidArgument: a nil function, a negative timeout, a nil backend
	// or another unusable argument.
	ErrInvalidArgument = store.ErrInvalidArgument
	// ErrPoolExhausted: every connection of the backend's pool was in use
	// (each held lock pins one) and none came free in time. It says nothing
	// about whether the key is held, so TryLock reports it as an error, not
	// as false. The Locker returns it inside a *NotAcquiredError with
	// Reason ReasonPoolExhausted.
	ErrPoolExhausted = store.ErrPoolExhausted
	// ErrCapacity: no more locks can be held: the server's lock table is
	// full (PostgreSQL's shared lock table, sized by
	// max_locks_per_transaction), the process ran out of file descriptors
	// (the file store), or the Locker already holds Options.MaxHeld locks.
	// Nothing was granted, and no lock already held was lost for it. The
	// Locker returns it inside a *NotAcquiredError with Reason
	// ReasonCapacity.
	ErrCapacity = store.ErrCapacity
)

// Reason says why a lock was not acquired.
type Reason uint8

const (
	// ReasonHeld: one try found the lock held elsewhere.
	ReasonHeld Reason = iota + 1
	// ReasonTimeout: the wait ran out (the call's timeout or the context's deadline).
	ReasonTimeout
	// ReasonCanceled: the context was canceled while waiting.
	ReasonCanceled
	// ReasonDeadlock: the database reported a deadlock.
	ReasonDeadlock
	// ReasonError: the backend failed (connection refused, pool closed, ...).
	ReasonError
	// ReasonRetriesExhausted: the Retry strategy ran out of attempts.
	ReasonRetriesExhausted
	// ReasonPoolExhausted: no database connection came free in time.
	ReasonPoolExhausted
	// ReasonCapacity: no more locks could be held (ErrCapacity).
	ReasonCapacity
)

func (r Reason) String() string {
	switch r {
	case ReasonHeld:
		return "held"
	case ReasonTimeout:
		return "timeout"
	case ReasonCanceled:
		return "canceled"
	case ReasonDeadlock:
		return "deadlock"
	case ReasonError:
		return "error"
	case ReasonRetriesExhausted:
		return "retries_exhausted"
	case ReasonPoolExhausted:
		return "pool_exhausted"
	case ReasonCapacity:
		return "capacity"
	}
	return "unknown"
}

// NotAcquiredError is returned when a lock was not granted. It matches
// ErrNotAcquired, and also its cause (context.DeadlineExceeded,
// context.Canceled, ErrDeadlock, a driver error) with errors.Is.
type NotAcquiredError struct {
	Key    string        // the full key, prefix included
	Reason Reason        // why
	Waited time.Duration // how long the call waited
	Err    error         // the cause, if any
}

func (e *NotAcquiredError) Error() string {
	head := fmt.Sprintf("kannuki: lock %q not acquired (%s after %s)", e.Key, e.Reason, human(e.Waited))
	return head + cause(e.Err, head, ErrNotAcquired)
}

// Unwrap lets errors.Is match ErrNotAcquired and the cause.
func (e *NotAcquiredError) Unwrap() []error {
	if e.Err == nil {
		return []error{ErrNotAcquired}
	}
	return []error{ErrNotAcquired, e.Err}
}

// LockLostError reports that a held lock was lost while fn ran. It matches
// ErrLockLost and the cause (typically a driver error).
type LockLostError struct {
	Key string
	Err error
}

func (e *LockLostError) Error() string {
	head := fmt.Sprintf("kannuki: lock %q lost", e.Key)
	return head + cause(e.Err, head, ErrLockLost)
}

// Unwrap lets errors.Is match ErrLockLost and the cause.
func (e *LockLostError) Unwrap() []error {
	if e.Err == nil {
		return []error{ErrLockLost}
	}
	return []error{ErrLockLost, e.Err}
}
