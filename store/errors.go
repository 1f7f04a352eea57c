package store

import (
	"errors"
	"time"
)

// DefaultReleaseTimeout is how long Kannuki's backends give a release (and
// the other statements that must not be cut short) unless configured.
const DefaultReleaseTimeout = 5 * time.Second

// Sentinel errors a Backend returns, wrapped with %w and a plain cause
// ("held by session 4242", not "kannuki: ..."): the Locker adds the
// "kannuki:" prefix, the key and the reason once. The root package exports
// the same values (kannuki.ErrNotAcquired is ErrNotAcquired).
var (
	// ErrNotAcquired: the lock was not granted (held elsewhere, or the
	// wait ran out).
	ErrNotAcquired = errors.New("kannuki: lock not acquired")
	// ErrLockLost: a held lock was lost (connection killed, database
	// restarted, session ended).
	ErrLockLost = errors.New("kannuki: lock lost")
	// ErrDeadlock: the database detected a deadlock, or the call would
	// deadlock.
	ErrDeadlock = errors.New("kannuki: deadlock")
	// ErrUnsupported: the backend cannot do what was asked (shared locks on
	// MySQL, for example).
	ErrUnsupported = errors.New("kannuki: unsupported by backend")
	// ErrInvalidKey: the key is unusable. See keys.Error.
	ErrInvalidKey = errors.New("kannuki: invalid key")
	// ErrInvalidArgument: a nil function, a negative timeout, a nil backend
	// or another unusable argument.
	ErrInvalidArgument = errors.New("kannuki: invalid argument")
	// ErrReleased: the lease was already released.
	ErrReleased = errors.New("kannuki: lock already released")
	// ErrPoolExhausted: every connection of the backend's pool was in use
	// and none came free in time. It says nothing about whether the key is
	// held.
	ErrPoolExhausted = errors.New("kannuki: connection pool exhausted")
	// ErrCapacity: no more locks can be held (a full server lock table, no
	// file descriptors left). Nothing was granted, and no lock already held
	// was lost for it.
	ErrCapacity = errors.New("kannuki: lock capacity reached")
)
