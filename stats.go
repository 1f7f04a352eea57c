package kannuki

import (
	"sync/atomic"
	"time"
)

// Stats is a snapshot of a Locker's activity since it was created.
// Counters are cumulative; Held and Waiting are gauges.
type Stats struct {
	Held    int64 // locks held now through this Locker (re-entrant calls not counted)
	Waiting int64 // calls acquiring now

	Acquired int64 // locks granted
	// Relocked counts the grants among Acquired that came with the key's
	// place in the local queue: the leaving holder's Relock took the lock
	// for the goroutine, which then asked the backend nothing.
	Relocked    int64
	NotAcquired int64 // calls that did not get the lock, all reasons
	// NotAcquired by reason.
	NotHeld, NotTimeout, NotCanceled, NotDeadlock, NotError, NotRetries, NotPoolExhausted, NotCapacity int64
	Released                                                                                           int64 // locks given back normally
	Lost                                                                                               int64 // locks found lost while held

	WaitTotal time.Duration // summed wait of acquired locks
	WaitMax   time.Duration // longest wait of an acquired lock
	HoldTotal time.Duration // summed hold time of released or lost locks
	HoldMax   time.Duration // longest hold
}

// counters are the Locker's live statistics: a handful of atomic adds per
// lock, no locks, no allocation.
type counters struct {
	held, waiting            atomic.Int64
	acquired, released, lost atomic.Int64
	relocked                 atomic.Int64
	notAcquired              [ReasonCapacity + 1]atomic.Int64
	waitTotal, waitMax       atomic.Int64
	holdTotal, holdMax       atomic.Int64
}

func (c *counters) granted(wait time.Duration, counted bool) {
	c.waiting.Add(-1)
	if counted {
		c.held.Add(1)
	}
	c.acquired.Add(1)
	c.waitTotal.Add(int64(wait))
	storeMax(&c.waitMax, int64(wait))
}

func (c *counters) refused(r Reason) {
	c.waiting.Add(-1)
	if int(r) < len(c.notAcquired) {
		c.notAcquired[r].Add(1)
	}
}

func (c *counters) ended(hold time.Duration, lost bool) {
	c.held.Add(-1)
	if lost {
		c.lost.Add(1)
	} else {
		c.released.Add(1)
	}
	c.holdTotal.Add(int64(hold))
	storeMax(&c.holdMax, int64(hold))
}

func storeMax(m *atomic.Int64, v int64) {
	for {
		old := m.Load()
		if v <= old || m.CompareAndSwap(old, v) {
			return
		}
	}
}

// Stats returns a snapshot of the Locker's counters.
func (l *Locker) Stats() Stats {
	c := &l.stats
	s := Stats{
		Held: c.held.Load(), Waiting: c.waiting.Load(),
		Acquired: c.acquired.Load(), Relocked: c.relocked.Load(), Released: c.released.Load(), Lost: c.lost.Load(),
		NotHeld:          c.notAcquired[ReasonHeld].Load(),
		NotTimeout:       c.notAcquired[ReasonTimeout].Load(),
		NotCanceled:      c.notAcquired[ReasonCanceled].Load(),
		NotDeadlock:      c.notAcquired[ReasonDeadlock].Load(),
		NotError:         c.notAcquired[ReasonError].Load(),
		NotRetries:       c.notAcquired[ReasonRetriesExhausted].Load(),
		NotPoolExhausted: c.notAcquired[ReasonPoolExhausted].Load(),
		NotCapacity:      c.notAcquired[ReasonCapacity].Load(),
		WaitTotal:        time.Duration(c.waitTotal.Load()), WaitMax: time.Duration(c.waitMax.Load()),
		HoldTotal: time.Duration(c.holdTotal.Load()), HoldMax: time.Duration(c.holdMax.Load()),
	}
	s.NotAcquired = s.NotHeld + s.NotTimeout + s.NotCanceled + s.NotDeadlock + s.NotError + s.NotRetries + s.NotPoolExhausted + s.NotCapacity
	return s
}
