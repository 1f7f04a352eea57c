package kannukimem

import (
	"context"
	"errors"

	"github.com/kannuki-go/kannuki/store"

	"github.com/kannuki-go/kannuki"
)

// errLost is the cause reported for a lease taken away by Lose.
var errLost = errors.New("lock taken away by Backend.Lose")

// lease is one granted Acquire.
type lease struct {
	b   *Backend
	key string
	h   *holder
}

var _ store.Checker = (*lease)(nil)

// Release implements store.Lease. It never blocks on anything but the
// table's mutex, so the context is not needed. A lease made lost by Lose
// returns an error matching store.ErrLockLost; a second Release returns
// an error matching store.ErrReleased.
func (l *lease) Release(context.Context) error {
	l.b.mu.Lock()
	defer l.b.mu.Unlock()
	switch {
	case l.h.released:
		return store.ErrReleased
	case l.h.lost:
		l.h.released = true
		return &kannuki.LockLostError{Key: l.key, Err: errLost}
	}
	l.h.released = true
	e := l.b.locks[l.key] // present: a live holder keeps its entry
	e.drop(l.h)
	l.b.forget(e)
	return nil
}

// Check implements store.Checker: nil while the lease holds its lock, an
// error matching store.ErrLockLost after Lose.
func (l *lease) Check(ctx context.Context) error {
	l.b.mu.Lock()
	defer l.b.mu.Unlock()
	switch {
	case l.h.lost:
		return &kannuki.LockLostError{Key: l.key, Err: errLost}
	case l.h.released:
		return store.ErrReleased
	}
	return nil
}
