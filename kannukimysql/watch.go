package kannukimysql

import (
	"errors"

	"github.com/kannuki-go/kannuki/store"

	"github.com/kannuki-go/kannuki"
)

// The socket watch. A lease handed a listener by its Locker (WatchLoss)
// arms its connection's socket on the Backend's poller while the lock is
// held and no statement runs, when Options.Dialer made that socket. All of
// it runs with l.mu held, as every statement on the connection does, so a
// statement never runs on an armed socket: runGuarded disarms first,
// destroy and putBack disarm before the connection is closed or pooled,
// and a successful check re-arms; a socket that turns readable ends the
// lease (fired).

// WatchLoss implements store.LossWatcher. The listener is told once,
// with l.mu held, when Check or the socket watch destroys the connection
// (the lock is then lost or in doubt), before the call that found out
// returns; never after Release or Relock.
func (l *lease) WatchLoss(ls store.LossListener) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.listener = ls
	if l.lost != nil {
		l.tell()
		return
	}
	l.arm()
}

// tell tells the listener of the loss, once. Caller holds l.mu.
func (l *lease) tell() {
	if l.listener != nil && l.lost != nil && !l.told {
		l.told = true
		l.listener.LockLost(l.lost)
	}
}

// arm watches the held connection's socket, when there is a listener to
// tell and a socket to watch. A socket that cannot be watched is not
// tried again. Caller holds l.mu; no statement runs.
func (l *lease) arm() {
	if l.listener == nil || l.conn == nil || l.sess == nil || l.sess.nc == nil {
		return
	}
	if l.w.Fire == nil {
		l.w.Fire = l.fired
	}
	if err := l.b.poller.Arm(&l.w, l.sess.nc); err != nil {
		l.sess.nc = nil // keepalive only for this connection
	}
}

// disarm stops watching before a statement, a return to the pool or a
// destruction. Caller holds l.mu.
func (l *lease) disarm() {
	if l.w.Fire != nil {
		l.b.poller.Disarm(&l.w)
	}
}

// fired runs when the watched socket turned readable: the server said
// something to a connection that runs no statement, which on MariaDB and
// MySQL is the end of the session (KILL, shutdown, wait_timeout): the
// server sends an idle session nothing else. The lock is lost, or in doubt
// at best, so the listener is told first, at once, and then the
// connection is destroyed (which ends the session if it was not ending);
// the socket is never read here. Confirming through the driver first
// would cost a statement's time, in which the server may already have
// granted the lock to the next waiter. A firing that raced a statement
// finds the watch armed again (nothing to do) or the connection gone.
func (l *lease) fired() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.conn == nil || l.listener == nil || l.w.Armed() {
		return
	}
	l.doubt = true // the session may still be there: Release makes sure it is gone
	l.lost = &kannuki.LockLostError{Key: l.key.String, Err: errSessionEnded}
	l.tell()
	l.destroy()
}

// errSessionEnded is the cause of a loss the socket watch found.
var errSessionEnded = errors.New("the server ended the session (its idle socket turned readable); connection destroyed")
