// Package sockwatch tells when a socket that should be silent turns
// readable. A connection that holds locks and runs no statement hears
// nothing from its server unless the session is ending: PostgreSQL sends a
// FATAL error and closes on pg_terminate_backend, a shutdown or a restart;
// MariaDB closes on KILL. Reading the news is the driver's job; this
// package only says that there is news, so the backend can hand the
// connection to its driver (a keepalive statement) and learn what it says
// at once instead of at the next keepalive.
//
// A socket is watched DefaultDelay after Arm (Poller.Delay), so that a
// lock held for less costs no system call.
//
// One Poller watches any number of sockets with one epoll instance and, only
// while it watches something, one goroutine parked in the runtime's network
// poller: no goroutine, timer or thread per socket. Arm and Disarm cost one
// epoll_ctl each. Nothing is ever read from a watched socket.
//
// The rule that keeps it safe: a socket is armed only while nobody uses it
// (no statement in flight, the connection not closed), and disarmed before
// anyone does. An armed watch fires at most once (one-shot).
package sockwatch

import (
	"errors"
	"net"
	"syscall"
	"time"

	"github.com/kannuki-go/kannuki/internal/due"
)

// DefaultDelay is how long a Poller waits after Arm before it watches the
// socket (Poller.Delay 0). Arming and disarming cost an epoll_ctl each,
// about 4 us together on the development machine: several per cent of an
// uncontended lock cycle, which gives its lock back within a fraction of a
// millisecond. A lock released within the delay costs two mutexes and no
// system call; a session that ends within it is heard when the delay is
// over, since epoll reports a socket that is already readable at once.
const DefaultDelay = time.Millisecond

// ErrUnsupported: the platform, or the connection, cannot be watched (not
// a socket with a file descriptor, or not Linux). The backend then relies
// on its keepalive.
var ErrUnsupported = errors.New("socket watch unsupported")

// Watch is one watched socket, embedded in what owns it. Its zero value is
// not armed. A Watch is used by one goroutine at a time (the holder of the
// connection), apart from Fire.
type Watch struct {
	// Fire is called, on a goroutine of its own, when the armed socket
	// turned readable, hung up or failed. It may come once after the
	// Disarm that raced it: Fire must check, under the owner's lock, that
	// the connection is still idle before it acts.
	Fire func()

	p       *Poller
	id      uint64
	fd      int
	armed   bool     // guarded by p.mu
	pending bool     // guarded by p.mu: waiting out the Poller's Delay
	conn    net.Conn // while pending
	node    due.Node // in the Poller's queue while pending
}

// watchable reports whether c has a socket rawConnOf can reach, without
// the allocation of SyscallConn.
func watchable(c net.Conn) bool {
	for range 4 {
		if _, ok := c.(syscall.Conn); ok {
			return true
		}
		u, ok := c.(interface{ NetConn() net.Conn })
		if !ok {
			return false
		}
		c = u.NetConn()
	}
	return false
}

// rawConnOf returns the syscall.RawConn of c's socket, looking through TLS
// (NetConn) and similar wrappers.
func rawConnOf(c net.Conn) (syscall.RawConn, error) {
	for range 4 {
		if sc, ok := c.(syscall.Conn); ok {
			return sc.SyscallConn()
		}
		u, ok := c.(interface{ NetConn() net.Conn })
		if !ok {
			break
		}
		c = u.NetConn()
	}
	return nil, ErrUnsupported
}
