package due

import (
	"context"
	"sync/atomic"
	"time"
)

// Cancel bounds a call that takes a context, such as a pool's Acquire, the
// way context.WithTimeout does, but through a Queue: the context is
// canceled when its node falls due. context.WithTimeout adds and stops a
// runtime timer on every call, and on a two-core machine the runtime
// answers a new earliest timer by waking a second thread, a cost that
// showed in every uncontended lock cycle. A Queue whose Fire is FireCancel
// holds Cancel nodes only, all pushed with the same delay.
type Cancel struct {
	node    Node
	cancel  context.CancelFunc
	expired atomic.Bool
}

// WithCancel returns a context derived from parent that q cancels at at,
// unless Stop comes first. Stop must be called once the call is over.
func WithCancel(q *Queue, parent context.Context, at time.Time) (context.Context, *Cancel) {
	c := &Cancel{}
	c.node.Owner = c
	ctx, cancel := context.WithCancel(parent)
	c.cancel = cancel
	q.Push(&c.node, at)
	return ctx, c
}

// Stop takes c off q and cancels its context. It reports whether q had
// canceled the context first: the bound ran out. A call that failed
// because q canceled its context always sees true.
func (c *Cancel) Stop(q *Queue) (expired bool) {
	q.Remove(&c.node)
	c.cancel()
	return c.expired.Load()
}

// FireCancel is the Fire of a Queue of Cancel nodes: it marks the node's
// Cancel expired, then cancels its context.
func FireCancel(n *Node) {
	c := n.Owner.(*Cancel)
	c.expired.Store(true) // before cancel: a call that saw the cancellation sees expired
	c.cancel()
}
