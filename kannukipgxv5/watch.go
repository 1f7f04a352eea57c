package kannukipgxv5

import (
	"context"
	"errors"
	"fmt"
)

// The socket watch (internal/sockwatch). A connection that holds locks and
// runs no statement hears nothing from the server unless its session is
// ending: pg_terminate_backend, a shutdown or a restart send a FATAL error
// and close the socket. So while a lease's connection of its own, or a
// shared connection, holds locks and idles, its socket is armed on the
// Backend's poller (one epoll instance and, while anything is armed, one
// goroutine for every connection: no goroutine or timer per lock). It is
// disarmed before every statement on the connection (try, unlock, relock,
// keepalive, clean-up: sharedConn.busy on a shared connection) and before
// the connection goes back to the pool or is destroyed, and armed again
// after a statement when locks remain (sharedConn.leave). A holder of the
// shared connection's slot that runs no statement (a keepalive another
// one answered) leaves the watch armed: no system call.
//
// When an armed socket turns readable, fire takes the connection as any
// statement would (the lease's mutex, the shared connection's statement
// slot). If no statement ran since the socket fired (the watch is still
// off), the session is ending: PostgreSQL sends an idle session nothing
// else. Every lease on the connection is told at once and then the
// connection is destroyed (which ends the session if it was not ending);
// nothing is ever read from the socket. A confirming statement first would
// give the server time to grant the lock to the next waiter before the
// holder is told. Options.NoWatch turns the watch off.

// errSessionEnded is the cause of a loss the socket watch found.
var errSessionEnded = errors.New("the server ended the session (its idle socket turned readable)")

// watch arms c's socket watch when c holds locks. Only the holder of c's
// statement slot calls watch and unwatch, and the watch is off (watched
// false) whenever a statement runs.
func (c *sharedConn) watch() {
	if c.held == 0 || c.deadCause() != nil || c.m.b.opts.NoWatch {
		return
	}
	// A socket that cannot be watched (sockwatch.ErrUnsupported) is left to
	// the keepalive.
	c.watched = c.m.b.poller.Arm(&c.w, c.pc.Conn().PgConn().Conn()) == nil
}

// unwatch disarms c's socket watch.
func (c *sharedConn) unwatch() {
	if c.watched {
		c.m.b.poller.Disarm(&c.w)
		c.watched = false
	}
}

// fire is c's sockwatch Fire: its socket turned readable while it held
// locks and idled, or a Fire raced the Disarm of a statement that then
// ran (and armed the watch again: nothing to do).
func (c *sharedConn) fire() {
	_ = c.enter(context.Background()) // every statement ahead is bounded
	defer c.leave()                   // watches again when c still holds locks
	if c.deadCause() != nil || c.held == 0 || !c.watched || c.w.Armed() {
		return // destroyed, back in the pool, or a statement ran since
	}
	c.busy()
	c.kill(errSessionEnded) // tells every lease before it destroys c
}

// watch arms the socket watch of l's connection. The caller holds l.mu
// (fire reads watched under it).
func (l *lease) watch() {
	if l.b.opts.NoWatch {
		return
	}
	if l.w.Fire == nil {
		l.w.Fire = l.fire
	}
	l.watched = l.b.poller.Arm(&l.w, l.pc.Conn().PgConn().Conn()) == nil
}

// unwatch disarms it. The caller holds l.mu.
func (l *lease) unwatch() {
	if l.watched {
		l.b.poller.Disarm(&l.w)
		l.watched = false
	}
}

// fire is l's sockwatch Fire: the socket of a connection still held
// turned readable while it idled, unless a statement ran since (and armed
// the watch again).
func (l *lease) fire() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.pc == nil || !l.watched || l.w.Armed() {
		return // released, destroyed, or a statement ran since
	}
	l.unwatch()
	l.lost = fmt.Errorf("the connection holding it (session %d) was closed: %w", l.pc.Conn().PgConn().PID(), errSessionEnded)
	l.news.tell(l.lost)
	destroy(l.pc, l.b.opts.releaseTimeout())
	l.pc = nil
}
