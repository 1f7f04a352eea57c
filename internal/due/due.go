// Package due is a queue of things that fall due after a fixed delay,
// served by one timer: Kannuki's Locker uses it for keepalive checks and
// the waiting report, and kannukipg to bound statements without a timer
// per statement.
package due

import (
	"sync"
	"time"
)

// Queue holds nodes that fall due at a time set when they are pushed,
// and hands each due node to fire. Its users push with one fixed delay, so
// the queue is a FIFO in due order. One timer per queue, armed only while
// it holds nodes, replaces a timer per node: adding and removing a node
// costs a mutex and no allocation, and a steady stream of short-lived
// nodes does not touch the runtime's timers at all.
type Queue struct {
	// Fire is called, outside the queue's lock and on the timer's goroutine,
	// with each node that fell due, already off the queue. Set it before
	// the first Push.
	Fire func(*Node)

	// TimerPerNode makes the queue give each node a runtime timer of its
	// own, as a context with a timeout or a socket deadline per statement
	// would: the standard library's way, kept so that benchmarks can pair
	// it against the shared timer in the same run (see the figures where
	// each Queue is declared). Set it before the first Push.
	TimerPerNode bool

	mu         sync.Mutex
	head, tail *Node
	timer      *time.Timer
	armed      bool
}

// Node is a place in a Queue, embedded in what waits there. The zero value
// is off every queue.
type Node struct {
	Owner      any // what the node stands for, for Fire
	at         time.Time
	prev, next *Node
	listed     bool        // guarded by the queue's mu
	timer      *time.Timer // with TimerPerNode: the node's own timer
}

// Push queues n to fall due at at.
func (q *Queue) Push(n *Node, at time.Time) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.TimerPerNode {
		q.pushOwnTimer(n, at)
		return
	}
	n.at, n.prev, n.next, n.listed = at, q.tail, nil, true
	if q.tail != nil {
		q.tail.next = n
	} else {
		q.head = n
	}
	q.tail = n
	if q.armed {
		return // the timer runs early enough: nodes fall due in order
	}
	q.armed = true
	d := max(time.Until(at), 0)
	if q.timer == nil {
		q.timer = time.AfterFunc(d, q.run)
	} else {
		q.timer.Reset(d)
	}
}

// Remove takes n off the queue if it is there.
func (q *Queue) Remove(n *Node) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.unlinkLocked(n)
}

func (q *Queue) unlinkLocked(n *Node) {
	if !n.listed {
		return
	}
	if q.TimerPerNode {
		n.listed = false
		n.timer.Stop()
		return
	}
	if n.prev != nil {
		n.prev.next = n.next
	} else {
		q.head = n.next
	}
	if n.next != nil {
		n.next.prev = n.prev
	} else {
		q.tail = n.prev
	}
	n.prev, n.next, n.listed = nil, nil, false
}

// run fires the nodes that are due and re-arms the timer for the next
// one, or leaves it disarmed when the queue is empty.
func (q *Queue) run() {
	q.mu.Lock()
	now := time.Now()
	var due []*Node // allocated only when something falls due
	for n := q.head; n != nil && !n.at.After(now); n = q.head {
		q.unlinkLocked(n)
		due = append(due, n)
	}
	if q.head != nil {
		q.timer.Reset(q.head.at.Sub(now))
	} else {
		q.armed = false
	}
	q.mu.Unlock()
	for _, n := range due {
		q.Fire(n)
	}
}

// pushOwnTimer is Push with TimerPerNode: the node's own timer, made once
// and reset on every later push. Caller holds q.mu.
func (q *Queue) pushOwnTimer(n *Node, at time.Time) {
	n.at, n.listed = at, true
	d := max(time.Until(at), 0)
	if n.timer == nil {
		n.timer = time.AfterFunc(d, func() { q.fireOwn(n) })
	} else {
		n.timer.Reset(d)
	}
}

// fireOwn is a node's own timer firing: a node still queued and due is
// taken off and handed to Fire; a stale firing (the node was removed, or
// pushed again for later) does nothing.
func (q *Queue) fireOwn(n *Node) {
	q.mu.Lock()
	due := n.listed && !n.at.After(time.Now())
	if due {
		n.listed = false
	}
	q.mu.Unlock()
	if due {
		q.Fire(n)
	}
}
