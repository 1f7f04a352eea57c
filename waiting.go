package kannuki

import (
	"context"
	"sync"
	"time"
)

// DefaultWaitingAfter is how long an attempt runs without an answer before
// the Locker reports EventWaiting for a backend that cannot tell a wait
// from a slow grant (see Options.WaitingAfter).
const DefaultWaitingAfter = 5 * time.Millisecond

// WaitNotifier is told when a backend starts to wait for a lock it found
// held (see Request.OnWait).
type WaitNotifier interface {
	// NotifyWait is cheap, never blocks, and ignores calls after the first.
	NotifyWait()
}

// waitWatch reports EventWaiting at most once per call, and never after the
// call's outcome: the report and finish exclude each other, so a hook sees
// attempt, waiting, outcome in that order even when the report comes from
// the Locker's scan. It exists only while a hook is set, and lives in the
// Handle, so watching costs no allocation.
type waitWatch struct {
	l     *Locker
	ctx   context.Context
	key   string
	mode  Mode
	start time.Time

	prev, next *waitWatch // in the Locker's scan list, oldest first
	listed     bool       // guarded by the scan's mutex

	mu   sync.Mutex
	done bool // reported, or the call has its outcome
}

// watchWait starts watching, in w, a call that may wait: the backend (by
// Request.OnWait), the local queue, a strategy's second try, or the
// Locker's scan after Options.WaitingAfter report the wait. It returns nil
// when there is no hook or the call cannot wait.
func (l *Locker) watchWait(ctx context.Context, k Key, cfg callConfig, start time.Time, w *waitWatch) *waitWatch {
	if l.hook == nil || cfg.wait == 0 {
		return nil
	}
	if _, ok := cfg.strategy.(NonBlocking); ok {
		return nil
	}
	if w == nil {
		w = new(waitWatch)
	}
	w.l, w.ctx, w.key, w.mode, w.start = l, ctx, k.String, cfg.mode, start
	if l.opts.waitingAfter() > 0 {
		l.scan.add(w)
	}
	return w
}

// notifier is the Request.OnWait of the watched call, or nil.
func (w *waitWatch) notifier() WaitNotifier {
	if w == nil {
		return nil
	}
	return w
}

// NotifyWait implements WaitNotifier.
func (w *waitWatch) NotifyWait() {
	if w == nil {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.done {
		return
	}
	w.done = true
	w.l.emit(w.ctx, Event{Kind: EventWaiting, Key: w.key, Mode: w.mode, Wait: time.Since(w.start)})
}

// finish ends the watch before the outcome is reported; a report running
// on the scan completes first.
func (w *waitWatch) finish() {
	if w == nil {
		return
	}
	w.l.scan.remove(w)
	w.mu.Lock()
	w.done = true
	w.mu.Unlock()
}

// waitScan finds the attempts that have run Options.WaitingAfter without
// an answer. One timer per Locker, armed only while attempts are in
// flight, replaces a timer per attempt.
type waitScan struct {
	mu         sync.Mutex
	head, tail *waitWatch
	timer      *time.Timer
	armed      bool
}

func (s *waitScan) add(w *waitWatch) {
	s.mu.Lock()
	defer s.mu.Unlock()
	w.prev, w.next, w.listed = s.tail, nil, true
	if s.tail != nil {
		s.tail.next = w
	} else {
		s.head = w
	}
	s.tail = w
	if s.armed {
		return
	}
	s.armed = true
	after := w.l.opts.waitingAfter()
	if s.timer == nil {
		l := w.l
		s.timer = time.AfterFunc(after, func() { l.scan.run(l) })
	} else {
		s.timer.Reset(after)
	}
}

func (s *waitScan) remove(w *waitWatch) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.unlinkLocked(w)
}

func (s *waitScan) unlinkLocked(w *waitWatch) {
	if !w.listed {
		return
	}
	if w.prev != nil {
		w.prev.next = w.next
	} else {
		s.head = w.next
	}
	if w.next != nil {
		w.next.prev = w.prev
	} else {
		s.tail = w.prev
	}
	w.prev, w.next, w.listed = nil, nil, false
}

// run reports the attempts that are due and re-arms the timer for the
// oldest one left, or disarms it.
func (s *waitScan) run(l *Locker) {
	after := l.opts.waitingAfter()
	s.mu.Lock()
	now := time.Now()
	var due []*waitWatch // allocated only when a wait is reported
	for w := s.head; w != nil && now.Sub(w.start) >= after; w = s.head {
		s.unlinkLocked(w)
		due = append(due, w)
	}
	if s.head != nil {
		s.timer.Reset(after - now.Sub(s.head.start))
	} else {
		s.armed = false
	}
	s.mu.Unlock()
	for _, w := range due {
		w.NotifyWait()
	}
}
