package kannukipgxv5

import (
	"time"

	"github.com/kannuki-go/kannuki/store"
)

// Default values used when the corresponding Options field is zero.
const (
	DefaultReleaseTimeout = 5 * time.Second
	DefaultTryConnTimeout = 5 * time.Second
)

// ErrPoolExhausted is store.ErrPoolExhausted: the cause of a try
// (Request.Wait 0) that found every connection of the pool in use, and of a
// timed wait that ran out while waiting for a connection. Such errors also
// match store.ErrNotAcquired (the lock was not obtained in the budget),
// but they say nothing about whether the key is held: through a Locker they
// come inside a
// *kannuki.NotAcquiredError with Reason kannuki.ReasonPoolExhausted, and
// TryLock reports it as an error, not as false.
var ErrPoolExhausted = store.ErrPoolExhausted

// Options configure a Backend. The zero value is ready to use.
type Options struct {
	// ReleaseTimeout bounds the statements Kannuki runs on its own after
	// the caller's context may be gone: the unlock of Release, the
	// keepalive of Check when its context has no deadline, and the clean-up
	// after an acquisition that a cancellation interrupted (the cancel
	// request, the wait for the interrupted statement, the check that
	// nothing is held). When it runs out the connection is destroyed,
	// which makes the server free whatever the session held.
	// 0 means DefaultReleaseTimeout.
	ReleaseTimeout time.Duration

	// TryConnTimeout bounds how long a single try (Request.Wait 0) may
	// spend getting a connection when the pool has an idle one or room to
	// open one (opening takes a few round trips). A try never waits for a
	// connection somebody else uses: with every connection in use it fails
	// at once with ErrPoolExhausted. 0 means DefaultTryConnTimeout.
	TryConnTimeout time.Duration

	// SessionPooler declares that the pool's connections go through a
	// connection pooler that gives each client connection a server session
	// of its own for as long as it is open (PgBouncer pool_mode=session).
	// Without it, the first Acquire checks that the server process it talks
	// to is the one announced when the connection opened (a pooler that
	// shares server sessions announces its own), and session locks fail
	// with an error matching store.ErrUnsupported when it is not: behind
	// a pooler in transaction mode (PgBouncer pool_mode=transaction) a
	// session lock would stay on a server session that other clients then
	// use. Transaction-scoped locks (AcquireTx, RunTx) are safe behind any
	// pooler and never check.
	SessionPooler bool

	// SharedConns is how many pool connections may hold locks for many
	// callers at once (multiplexing, see the package documentation): a
	// lock that is free is taken with a single try on one of them instead
	// of pinning a connection of its own, so that thousands of held locks
	// need only a few sessions. Waits still get a connection of their own.
	// 0 means the default: half the pool's MaxConns, at least 1.
	// A negative value turns multiplexing off: every held lock pins its
	// own connection.
	SharedConns int

	// NoWatch turns the socket watch off; a lost lock is then found by the
	// keepalive or the release. By default a connection that holds locks
	// and runs no statement is watched (one poller per Backend, no
	// goroutine or timer per lock): when its socket turns readable (the
	// server ended the session) every lease on the connection is told of
	// the loss at once, and then the connection is destroyed (see Lost
	// locks in the package documentation).
	NoWatch bool
}

// sharedConns is the bound on shared connections for a pool of maxConns,
// or 0 when multiplexing is off.
func (o Options) sharedConns(maxConns int32) int {
	switch {
	case o.SharedConns < 0:
		return 0
	case o.SharedConns > 0:
		return o.SharedConns
	}
	return max(1, int(maxConns)/2)
}

func (o Options) releaseTimeout() time.Duration {
	if o.ReleaseTimeout > 0 {
		return o.ReleaseTimeout
	}
	return DefaultReleaseTimeout
}

func (o Options) tryConnTimeout() time.Duration {
	if o.TryConnTimeout > 0 {
		return o.TryConnTimeout
	}
	return DefaultTryConnTimeout
}
