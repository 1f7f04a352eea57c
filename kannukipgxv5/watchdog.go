package kannukipgxv5

import (
	"errors"
	"time"
)

// The try and the unlock on a shared connection, the unlock on a connection
// of its own, and the pool request of a try (the one that opens a shared
// connection, or a try on a connection of its own) are
// bounded by two watchdogs (Backend.stmtDog and Backend.connDog, a due.Queue
// each with one timer between them all) rather than by a runtime timer
// per statement. A socket deadline set and lifted around each statement,
// or a context with a timeout around each pool request, adds and removes
// a runtime timer every time, and on a two-core machine the runtime
// answers a new earliest timer by waking a second thread: measured here
// as the largest share of what an uncontended cycle costs over the raw
// statements. The watchdog touches the socket only when a statement is
// overdue, by setting a deadline in the past, which makes the read fail
// at once (internal/sockbound); the connection is destroyed then. The pool
// request runs on a context the watchdog cancels (due.WithCancel).

// errOverdue is why a shared connection whose statement ran past
// Options.ReleaseTimeout was destroyed.
var errOverdue = errors.New("a statement on the shared connection ran past ReleaseTimeout")

// startBound bounds the statements the caller (the holder of c's slot)
// runs on c from sent on, until endBound, and returns the deadline.
func (c *sharedConn) startBound(sent time.Time) time.Time {
	deadline := sent.Add(c.m.b.opts.releaseTimeout())
	c.bound.Start(&c.m.b.stmtDog, c.pc.Conn().PgConn().Conn(), deadline)
	return deadline
}

// endBound ends the bound. It reports whether the watchdog cut the
// statement short: the socket then fails every read and write, and the
// caller must destroy c whatever the statement returned.
func (c *sharedConn) endBound() (fired bool) { return c.bound.End(&c.m.b.stmtDog) }
