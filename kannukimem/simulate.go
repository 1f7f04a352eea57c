package kannukimem

import (
	"fmt"

	"github.com/kannuki-go/kannuki/store"
)

// SimulateHeld makes key held in mode by a simulated other holder, as if
// another process had it: tries fail, waiters wait, Held reports true, and
// a shared simulated hold admits shared requests. The hold lasts until the
// returned release function is called (calling it again does nothing).
//
// It never waits: when key is held in a conflicting mode, or requests are
// queued for it, SimulateHeld returns an error matching
// store.ErrNotAcquired, so a test cannot silently overlap a real holder.
func (b *Backend) SimulateHeld(key store.Key, mode store.Mode) (release func(), err error) {
	if mode != store.ModeExclusive && mode != store.ModeShared {
		return nil, fmt.Errorf("%w: unknown lock mode %d", store.ErrInvalidArgument, mode)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	e := b.entry(key.String)
	if e.waiters.Len() != 0 || !e.compatible(mode) {
		b.forget(e)
		return nil, fmt.Errorf("cannot simulate a %s hold: the key is held or awaited: %w", mode, store.ErrNotAcquired)
	}
	h := e.grant(mode, true)
	return func() {
		b.mu.Lock()
		defer b.mu.Unlock()
		if h.released {
			return
		}
		h.released = true
		e := b.locks[key.String]
		e.drop(h)
		b.forget(e)
	}, nil
}

// Lose takes key away from its current leases, as a database does when the
// holding session is killed: the lock becomes free for others (waiters are
// granted), each lease's Check and Release return errors matching
// store.ErrLockLost, and a Locker using this backend reports the loss at
// its next keepalive. Simulated holds are not affected. Lose returns the
// number of leases it took the lock from.
func (b *Backend) Lose(key store.Key) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	e, ok := b.locks[key.String]
	if !ok {
		return 0
	}
	n := 0
	for h := range e.holders {
		if !h.simulated {
			h.lost = true
			delete(e.holders, h)
			n++
		}
	}
	if len(e.holders) == 0 {
		e.exclusive = false
	}
	e.dispatch()
	b.forget(e)
	return n
}
