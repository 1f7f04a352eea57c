// Package sockbound bounds the statement running on a database socket
// through a due.Queue instead of a runtime timer or a context per
// statement: when the statement is still running at its deadline, the
// socket gets a deadline in the past, which fails its read at once. The
// caller then destroys the connection. kannukipg (pgx/stdlib) and
// kannukipgxv5 (shared connections) bound their try and unlock this way.
package sockbound

import (
	"net"
	"sync"
	"time"

	"github.com/kannuki-go/kannuki/internal/due"
)

// Bound is the watchdog's view of one socket's running statement. Its
// user runs one statement at a time under it (Start, the statement, End);
// the zero value is ready. A Bound is pushed on a Queue whose Fire is Fire.
type Bound struct {
	node    due.Node
	mu      sync.Mutex
	sock    net.Conn
	running bool
	due     time.Time
	fired   bool // the socket was given a past deadline
}

// Start bounds the statement about to run on sock until End: q fires at
// deadline unless End comes first.
func (b *Bound) Start(q *due.Queue, sock net.Conn, deadline time.Time) {
	b.mu.Lock()
	b.sock, b.running, b.due, b.fired = sock, true, deadline, false
	b.mu.Unlock()
	if b.node.Owner == nil { // set once, before any Fire can read it
		b.node.Owner = b
	}
	q.Push(&b.node, deadline)
}

// End ends the bound. It reports whether the watchdog cut the statement
// short: the socket then fails every read and write, and the caller must
// destroy the connection whatever the statement returned.
func (b *Bound) End(q *due.Queue) (fired bool) {
	q.Remove(&b.node)
	b.mu.Lock()
	fired, b.running = b.fired, false
	b.mu.Unlock()
	return fired
}

// Fire is the Fire of a Queue of Bounds. It interrupts a statement still
// running at its deadline; a late call for a statement that ended (or a
// later one, with a later deadline) does nothing.
func Fire(n *due.Node) {
	b := n.Owner.(*Bound)
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.running && !time.Now().Before(b.due) {
		b.fired = true
		_ = b.sock.SetDeadline(time.Unix(1, 0))
	}
}
