package kannukipgxv5

import (
	"errors"
	"time"
)

// The try and the unlock on a shared connection and the unlock on a
// connection of its own are bounded by a watchdog (internal/sockbound, a
// runtime timer per connection or lease) that touches the socket only when
// a statement is overdue, by setting a deadline in the past, which makes
// the read fail at once; the connection is destroyed then. The pool
// request of a try runs on a context with a timeout (TryConnTimeout). A
// queue with one timer for all saved about 1% of a cycle, inside the noise
// (BenchmarkPairedTimers, 2026-12-08: time per cycle with a timer each
// over the queue's, median 1.01 dedicated and multiplexed).

// errOverdue is why a shared connection whose statement ran past
// Options.ReleaseTimeout was destroyed.
var errOverdue = errors.New("a statement on the shared connection ran past ReleaseTimeout")

// startBound bounds the statements the caller (the holder of c's slot)
// runs on c from sent on, until endBound, and returns the deadline.
func (c *sharedConn) startBound(sent time.Time) time.Time {
	deadline := sent.Add(c.m.b.opts.releaseTimeout())
	c.bound.Start(c.pc.Conn().PgConn().Conn(), deadline)
	return deadline
}

// endBound ends the bound. It reports whether the watchdog cut the
// statement short: the socket then fails every read and write, and the
// caller must destroy c whatever the statement returned.
func (c *sharedConn) endBound() (fired bool) { return c.bound.End() }
