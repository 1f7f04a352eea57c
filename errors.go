package kannuki

import (
	"errors"
	"fmt"
	"time"
)

// Sentinel errors. Match them with errors.Is; every error Kannuki returns
// starts with "kannuki:".
var (
	// ErrNotAcquired: the lock was not granted (held elsewhere, timed out,
	// or the context ended while waiting). See NotAcquiredError.
	ErrNotAcquired = errors.New("kannuki: lock not acquired")
	// ErrLockLost: a held lock was lost (connection killed, database
	// restarted, session ended). The work done under it may have overlapped
	// with another holder.
	ErrLockLost = errors.New("kannuki: lock lost")
	// ErrDeadlock: the database detected a deadlock, or the call would
	// deadlock (upgrading a shared lock this goroutine holds to exclusive).
	ErrDeadlock = errors.New("kannuki: deadlock")
	// ErrUnsupported: the backend cannot do what was asked (shared locks on
	// MySQL, for example).
	ErrUnsupported = errors.New("kannuki: unsupported by backend")
	// ErrInvalidKey: the key is empty, too long, not UTF-8, contains NUL, or
	// does not fit the key scheme. See KeyError.
	ErrInvalidKey = errors.New("kannuki: invalid key")
	// ErrInvalidArgument: a nil function, a negative timeout, a nil backend
	// or another unusable argument.
	ErrInvalidArgument = errors.New("kannuki: invalid argument")
	// ErrReleased: the lease was already released.
	ErrReleased = errors.New("kannuki: lock already released")
	// ErrPoolExhausted: every connection of the backend's pool was in use
	// (each held lock pins one) and none came free in time. It says nothing
	// about whether the key is held, so TryLock reports it as an error, not
	// as false. Backends wrap it; the Locker returns it inside a
	// *NotAcquiredError with Reason ReasonPoolExhausted.
	ErrPoolExhausted = errors.New("kannuki: connection pool exhausted")
	// ErrCapacity: no more locks can be held: the server's lock table is
	// full (PostgreSQL's shared lock table, sized by
	// max_locks_per_transaction), the process ran out of file descriptors
	// (the file store), or the Locker already holds Options.MaxHeld locks.
	// Nothing was granted, and no lock already held was lost for it. The
	// Locker returns it inside a *NotAcquiredError with Reason
	// ReasonCapacity.
	ErrCapacity = errors.New("kannuki: lock capacity reached")
	// ErrNoDefault: a package-level function was called before SetDefault.
	ErrNoDefault = errors.New("kannuki: no default Locker (call SetDefault)")
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
	msg := fmt.Sprintf("kannuki: lock %q not acquired (%s after %s)", e.Key, e.Reason, e.Waited.Round(time.Microsecond))
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	return msg
}

// Unwrap lets errors.Is match ErrNotAcquired and the cause.
func (e *NotAcquiredError) Unwrap() []error {
	if e.Err == nil {
		return []error{ErrNotAcquired}
	}
	return []error{ErrNotAcquired, e.Err}
}

// KeyError reports an unusable key. It matches ErrInvalidKey.
type KeyError struct {
	Key    string
	Reason string
}

func (e *KeyError) Error() string {
	k := e.Key
	if len(k) > 64 {
		k = k[:64] + "..."
	}
	return fmt.Sprintf("kannuki: invalid key %q: %s", k, e.Reason)
}

// Unwrap makes errors.Is(err, ErrInvalidKey) true.
func (e *KeyError) Unwrap() error { return ErrInvalidKey }

// LockLostError reports that a held lock was lost while fn ran. It matches
// ErrLockLost and the cause (typically a driver error).
type LockLostError struct {
	Key string
	Err error
}

func (e *LockLostError) Error() string {
	if e.Err == nil {
		return fmt.Sprintf("kannuki: lock %q lost", e.Key)
	}
	if errors.Is(e.Err, ErrLockLost) {
		return e.Err.Error() // the cause already says the lock was lost
	}
	return fmt.Sprintf("kannuki: lock %q lost: %v", e.Key, e.Err)
}

// Unwrap lets errors.Is match ErrLockLost and the cause.
func (e *LockLostError) Unwrap() []error {
	if e.Err == nil {
		return []error{ErrLockLost}
	}
	return []error{ErrLockLost, e.Err}
}
