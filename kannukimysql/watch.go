package kannukimysql

import (
	"context"

	"github.com/kannuki-go/kannuki"
)

// The socket watch. A lease handed a listener by its Locker (WatchLoss)
// arms its connection's socket on the Backend's poller while the lock is
// held and no statement runs, when Options.Dialer made that socket. All of
// it runs with l.mu held, as every statement on the connection does, so a
// statement never runs on an armed socket: runGuarded disarms first,
// destroy and putBack disarm before the connection is closed or pooled,
// and a successful check re-arms.

// WatchLoss implements kannuki.LossWatcher. The listener is told once,
// with l.mu held, when Check or the socket watch destroys the connection
// (the lock is then lost or in doubt), before the call that found out
// returns; never after Release or Relock.
func (l *lease) WatchLoss(ls kannuki.LossListener) {
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
// something to a connection that runs no statement, which is the end of
// the session (KILL, shutdown) or a message of no consequence. The driver
// finds out which with the keepalive statement: on failure the connection
// is destroyed and the listener told (check), else the socket is watched
// again. A firing that raced a statement finds the watch armed again
// (nothing to do) or the connection gone.
func (l *lease) fired() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.conn == nil || l.listener == nil || l.w.Armed() {
		return
	}
	_ = l.check(context.Background())
}
