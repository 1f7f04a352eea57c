package kannukipgxv5

import (
	"context"
	"fmt"
	"time"

	"github.com/kannuki-go/kannuki/internal/pgsql"
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
// slot) and runs the keepalive statement on it through pgx, which reads
// what the server said; nothing is ever read behind pgx's back. When the
// statement fails the connection is destroyed and every lease on it is
// told of the loss (kannuki.LossWatcher); when it succeeds (the news was
// harmless, a notice say) the watch is armed again. Options.NoWatch turns
// the watch off.

// watch arms c's socket watch when c holds locks. Only the holder of c's
// statement slot calls watch and unwatch, and the watch is off (watched
// false) whenever a statement runs.
func (c *sharedConn) watch() {
	if c.held == 0 || c.killed || c.m.b.opts.NoWatch {
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
// ran. It checks the connection as the keepalive does, under the slot.
func (c *sharedConn) fire() {
	_ = c.enter(context.Background()) // every statement ahead is bounded
	defer c.leave()                   // watches again when c still holds locks
	if c.killed || c.held == 0 {
		return // destroyed, or back in the pool: nothing to check
	}
	c.busy()
	sent := time.Now()
	c.setDeadline(sent.Add(c.m.b.opts.releaseTimeout()))
	_, err := c.pc.Conn().Exec(context.Background(), pgsql.Comment(c.someKey()))
	c.clearDeadline()
	if err != nil {
		c.kill(fmt.Errorf("its socket turned readable while it idled, and the check failed: %w", err))
		return
	}
	c.proved(sent)
}

// someKey is the key of a lock c holds, for the comment of a check: what
// pg_stat_activity, and Locks for a session with one lock, then show.
func (c *sharedConn) someKey() string {
	c.m.mu.Lock()
	defer c.m.mu.Unlock()
	for _, st := range c.keys {
		if st.lease != nil {
			return st.lease.key.String
		}
	}
	return ""
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

// fire is l's sockwatch Fire: the keepalive, on a connection still held.
func (l *lease) fire() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.pc == nil {
		return // released or destroyed
	}
	_ = l.keepalive(context.Background(), "its socket turned readable while it idled, and the check failed")
}
