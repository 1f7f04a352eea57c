package kannukipgxv5

import (
	"time"

	"github.com/kannuki-go/kannuki"
)

// Default values used when the corresponding Options field is zero.
const (
	DefaultReleaseTimeout = 5 * time.Second
	DefaultTryConnTimeout = 5 * time.Second
)

// ErrPoolExhausted is kannuki.ErrPoolExhausted: the cause of a try
// (Request.Wait 0) that found every connection of the pool in use, and of a
// timed wait that ran out while waiting for a connection. It says nothing
// about whether the key is held; through a Locker it comes inside a
// *kannuki.NotAcquiredError with Reason kannuki.ReasonPoolExhausted, and
// TryLock reports it as an error, not as false.
var ErrPoolExhausted = kannuki.ErrPoolExhausted

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
