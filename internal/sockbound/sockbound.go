// Package sockbound bounds the statement running on a database socket:
// when the statement is still running at its deadline, the socket gets a
// deadline in the past, which fails its read at once. The caller then
// destroys the connection. kannukipg (pgx/stdlib) and kannukipgxv5
// (shared connections, and the unlock on a connection of its own) bound
// their try and unlock this way.
//
// Each Bound has a runtime timer of its own, made once and reset per
// statement. A queue with one timer for all Bounds saved nothing
// measurable on a lock cycle (BenchmarkPairedTimers, 2026-12-08: time
// per cycle with a timer per statement over the queue's, 0.99-1.05 on
// pgx/stdlib, median 1.01 on kannukipgxv5), so the standard library's
// timer does the work.
package sockbound

import (
	"net"
	"sync"
	"time"
)

// Bound is the watchdog's view of one socket's running statement. Its
// user runs one statement at a time under it (Start, the statement, End);
// the zero value is ready.
type Bound struct {
	mu      sync.Mutex
	timer   *time.Timer
	sock    net.Conn
	running bool
	due     time.Time
	fired   bool // the socket was given a past deadline
}

// Start bounds the statement about to run on sock until End: the socket
// fails at deadline unless End comes first.
func (b *Bound) Start(sock net.Conn, deadline time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.sock, b.running, b.due, b.fired = sock, true, deadline, false
	d := max(time.Until(deadline), 0)
	if b.timer == nil {
		b.timer = time.AfterFunc(d, b.fire)
	} else {
		b.timer.Reset(d)
	}
}

// End ends the bound. It reports whether the watchdog cut the statement
// short: the socket then fails every read and write, and the caller must
// destroy the connection whatever the statement returned.
func (b *Bound) End() (fired bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.timer.Stop()
	fired, b.running = b.fired, false
	return fired
}

// fire interrupts a statement still running at its deadline; a late call
// for a statement that ended (or a later one, with a later deadline) does
// nothing.
func (b *Bound) fire() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.running && !time.Now().Before(b.due) {
		b.fired = true
		_ = b.sock.SetDeadline(time.Unix(1, 0))
	}
}
