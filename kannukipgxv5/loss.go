package kannukipgxv5

import (
	"sync"

	"github.com/kannuki-go/kannuki/store"
)

// lossNews tells a lease's store.LossListener of a loss the backend found
// (store.LossWatcher): a connection it destroyed, or a watched socket
// whose check failed. It has a mutex of its own, not the lease's: a
// shared connection that dies tells every lease on it, and those leases
// may be busy with statements of their own (holding their mutex, waiting
// for the connection). The listener never calls back into the lease, so
// it is called with mu held, which orders it before the end of a release.
type lossNews struct {
	mu       sync.Mutex
	listener store.LossListener
	cause    error // the loss, once known
	ended    bool  // released: never tell any more
}

// watch implements store.LossWatcher for the lease that holds o:
// a loss already known is told at once.
func (o *lossNews) watch(l store.LossListener) {
	o.mu.Lock()
	defer o.mu.Unlock()
	switch {
	case o.ended:
	case o.cause != nil:
		l.LockLost(o.cause)
	default:
		o.listener = l
	}
}

// tell records the loss and tells the listener, once, unless the lease
// was released.
func (o *lossNews) tell(cause error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.ended || o.cause != nil {
		return
	}
	o.cause = cause
	if l := o.listener; l != nil {
		o.listener = nil
		l.LockLost(cause)
	}
}

// end is called by Release and Relock before they return: the listener
// is not told after that.
func (o *lossNews) end() {
	o.mu.Lock()
	o.ended, o.listener = true, nil
	o.mu.Unlock()
}
