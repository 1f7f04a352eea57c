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

// waitWatch reports EventWaiting at most once per call, and never after the
// call's outcome: the report and finish exclude each other, so a hook sees
// attempt, waiting, outcome in that order even when the report comes from
// a timer. It exists only while a hook is set; without one, the acquisition
// path pays a nil check.
type waitWatch struct {
	l     *Locker
	ctx   context.Context
	key   string
	mode  Mode
	start time.Time
	timer *time.Timer

	mu   sync.Mutex
	done bool // reported, or the call has its outcome
}

// watchWait starts watching a call that may wait: a backend's OnWait, the
// local queue, a strategy's second try, or WaitingAfter without an answer
// report it. It returns nil when there is no hook or the call cannot wait.
func (l *Locker) watchWait(ctx context.Context, k Key, cfg callConfig, start time.Time) *waitWatch {
	if l.hook == nil || cfg.wait == 0 {
		return nil
	}
	if _, ok := cfg.strategy.(NonBlocking); ok {
		return nil
	}
	w := &waitWatch{l: l, ctx: ctx, key: k.String, mode: cfg.mode, start: start}
	if after := l.opts.waitingAfter(); after > 0 {
		w.timer = time.AfterFunc(after, w.report)
	}
	return w
}

// onWait is the Request.OnWait callback for the watched call, or nil.
func (w *waitWatch) onWait() func() {
	if w == nil {
		return nil
	}
	return w.report
}

// report emits EventWaiting unless it was emitted or the call ended.
func (w *waitWatch) report() {
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
// on the timer completes first.
func (w *waitWatch) finish() {
	if w == nil {
		return
	}
	if w.timer != nil {
		w.timer.Stop()
	}
	w.mu.Lock()
	w.done = true
	w.mu.Unlock()
}
