package kannukipg

import (
	"context"
	"errors"

	"github.com/kannuki-go/kannuki/store"

	"github.com/kannuki-go/kannuki"
)

// A held lock's connection runs no statement between the grant and the
// release, apart from the keepalive, and the server sends it nothing
// unless its session is ending: pg_terminate_backend, a shutdown and a
// restart send a FATAL error and close the socket. While a lease holds its
// lock and runs no statement, its socket is watched by the Backend's
// sockwatch.Poller (one epoll instance and one goroutine for all leases);
// the lease disarms it before each of its statements (the unlock, the
// relock, the keepalive) and before its connection goes back to the pool
// or is destroyed, and re-arms it after a keepalive. When the socket turns
// readable, fired tells the lease's listener at once and destroys the
// connection (see fired). Nothing is read from the socket.
//
// The socket is reached on pgx/stdlib through Conn.Raw (socket.go), and on
// lib/pq through a Dialer (dialer.go). Options.NoWatch turns the watch off.

// findSock sets the socket the lease's watch watches, if the Backend
// watches and the socket can be reached. conn must run no statement.
func (l *lease) findSock() {
	switch {
	case !l.b.watch:
	case l.sock != nil:
		l.wsock = l.sock
	case l.b.dialer != nil && !l.b.timers:
		l.wsock = l.b.socks.of(l.conn, l.b.dialer.lookup)
	}
}

// arm watches the lease's socket while it holds its lock and runs no
// statement. Call with l.mu held (or before the lease is handed out).
func (l *lease) arm() {
	if l.wsock == nil || l.armed || l.conn == nil {
		return
	}
	if l.b.poller.Arm(&l.watch, l.wsock) != nil {
		l.wsock = nil // not a watchable socket: the keepalive it is
		return
	}
	l.armed = true
}

// disarm stops the watch before a statement runs on the connection, or
// before it is pooled or closed. Call with l.mu held.
func (l *lease) disarm() {
	if l.wsock == nil {
		return
	}
	if l.armed {
		l.b.poller.Disarm(&l.watch)
		l.armed = false
	}
}

// fired is the watch's Fire: the socket of a held lock turned readable.
// PostgreSQL sends an idle session nothing unless it is ending (a FATAL
// error on pg_terminate_backend, a shutdown, a restart, idle timeouts), so
// the lock is lost, or in doubt at best: the listener is told first, at
// once, and then the connection is destroyed (which ends the session if it
// was not ending). Nothing is read from the socket. Confirming through the
// driver first would cost a statement's time, in which the server may
// already have granted the lock to the next waiter. A Fire that raced a
// statement, a release or a relock finds the watch disarmed and does
// nothing.
func (l *lease) fired() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.armed || l.conn == nil {
		return
	}
	l.disarm()
	l.lost = &kannuki.LockLostError{Key: l.key.String, Err: errSessionEnded}
	l.tell(l.lost)
	l.destroy()
}

// errSessionEnded is the cause of a loss the socket watch found.
var errSessionEnded = errors.New("the server ended the session (its idle socket turned readable); connection destroyed")

// keepalive runs the keepalive statement on the pinned connection, bounded
// by ReleaseTimeout, or by a sooner deadline of ctx.
func (l *lease) keepalive(ctx context.Context) error {
	cctx, cancel := l.b.bounded(ctx, true)
	defer cancel()
	_, err := l.conn.ExecContext(cctx, checkSQL(l.key))
	return err
}

// lose destroys the connection of a lease whose lock is lost or in doubt,
// records the loss and tells the listener, before the caller returns.
// Call with l.mu held.
func (l *lease) lose(cause error) error {
	l.destroy()
	l.lost = &kannuki.LockLostError{Key: l.key.String, Err: cause}
	l.tell(l.lost)
	return l.lost
}

// tell tells the listener, once, that the lock is lost. Call with l.mu
// held: the listener never calls back into the lease.
func (l *lease) tell(cause error) {
	if l.listener != nil && !l.told {
		l.told = true
		l.listener.LockLost(cause)
	}
}

// WatchLoss implements store.LossWatcher. The lease tells lis when it
// destroys its connection while holding the lock (a failed keepalive, a
// failed or timed-out unlock or relock, a socket watch that found the
// session ended), before the call that found out returns; at once when
// that happened already.
func (l *lease) WatchLoss(lis store.LossListener) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.listener = lis
	if l.lost != nil {
		l.tell(l.lost)
	}
}

// startWatch watches a lease just granted, or the lease a relock made.
// The Poller arms the socket only once the lock has been held for
// sockwatch.DefaultDelay: a lock given back sooner costs no system call.
// It takes l.mu, as fired does: the Poller may fire on its own goroutine
// as soon as the socket is armed. Call before the lease is handed out.
func (l *lease) startWatch() {
	if !l.b.watch {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.wsock == nil {
		l.findSock()
	}
	if l.wsock == nil {
		return
	}
	if l.watch.Fire == nil {
		l.watch.Fire = l.fired
	}
	l.arm()
}
