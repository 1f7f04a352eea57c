package kannukiotel

import (
	"context"
	"sync"
	"time"
)

// record is a finished acquisition or hold that the Hook has yet to hand
// to the SDK: its histogram value and its span.
type record struct {
	ctx    context.Context // the call's, for the span's parent and exemplars
	end    time.Time       // the event's time
	d      time.Duration   // Event.Wait or Event.Hold; the span starts at end-d
	waited time.Duration   // acquisitions: Event.WaitBegan, when the wait began after the start; 0 without
	key    string          // with KeyAttribute only
	err    error           // with KeyAttribute only: the message may quote the key
	hold   bool            // a hold (released or lost), else an acquisition
	mode   uint8           // modeIndex
	index  uint8           // outcome.Index of an acquisition, endIndex of a hold
}

func (r *record) start() time.Time { return r.end.Add(-r.d) }

// Batching bounds: a flush is started early when maxBatch records are
// pending (the default queue of the SDK's batch span processor holds 2048
// spans, so a flush does not overrun it), and a locking goroutine hands
// its record over itself, as with a negative FlushDelay, when maxPending
// are (the flushes cannot keep up: a blocking exporter, say), so that
// memory stays bounded.
const (
	maxBatch   = 512
	maxPending = 8 * maxBatch
)

// pending keeps records until a flush hands them to the SDK. Handing a
// span to the SDK's batch span processor wakes its goroutine, one wake-up
// per span, which on a small machine costs more than the rest of the hook;
// a flush wakes it once for many spans, off the locking goroutine. An
// event only copies its record into a reused slice under a mutex.
type pending struct {
	delay time.Duration // <= 0: no batching
	timer *time.Timer   // flushes; armed while records are pending

	mu      sync.Mutex
	records []record
	spare   []record // the slice of the last flush, emptied, for reuse
	armed   bool

	flushing sync.Mutex // one flush at a time
}

// init sets the delay; flush is what the timer calls.
func (p *pending) init(delay time.Duration, flush func()) {
	p.delay = delay
	if delay > 0 {
		p.timer = time.AfterFunc(time.Hour, flush)
		p.timer.Stop()
	}
}

// add keeps a copy of r for the next flush. It reports false, keeping
// nothing, without batching or when too many records are pending: the
// caller hands r over itself.
func (p *pending) add(r *record) bool {
	if p.delay <= 0 {
		return false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	n := len(p.records)
	if n >= maxPending {
		return false
	}
	p.records = append(p.records, *r)
	switch {
	case n+1 == maxBatch:
		p.timer.Reset(0)
		p.armed = true
	case !p.armed:
		p.timer.Reset(p.delay)
		p.armed = true
	}
	return true
}

// take returns the pending records, in the order of their events, for a
// flush, which holds p.flushing and gives the slice back when done.
func (p *pending) take() []record {
	p.mu.Lock()
	defer p.mu.Unlock()
	batch := p.records
	p.records, p.spare = p.spare, nil
	p.armed = false // a timer still armed fires on the next batch or none
	return batch
}

// giveBack empties a flushed batch (dropping its contexts and errors) and
// keeps it for reuse.
func (p *pending) giveBack(batch []record) {
	clear(batch)
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.records == nil {
		p.records = batch[:0]
	} else {
		p.spare = batch[:0]
	}
}
