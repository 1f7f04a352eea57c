package kannuki

import (
	"context"
	"sync"
	"time"

	"github.com/kannuki-go/kannuki/internal/due"
	"github.com/kannuki-go/kannuki/store"
)

// defaultWaitingAfter is how long an attempt runs without an answer before
// the Locker reports EventWaiting for a backend that cannot tell a wait
// from a slow grant (see Options.WaitingAfter).
const defaultWaitingAfter = 5 * time.Millisecond

// waitWatch reports EventWaiting at most once per call, and never after the
// call's outcome: the report and finish exclude each other, so a hook sees
// attempt, waiting, outcome in that order even when the report comes from
// the Locker's timer. It exists only while a hook is set, and lives in the
// Handle, so watching costs no allocation.
type waitWatch struct {
	l     *Locker
	ctx   context.Context
	key   string
	mode  store.Mode
	start time.Time
	node  due.Node // in the Locker's queue of attempts to report after WaitingAfter

	mu    sync.Mutex
	done  bool          // reported, or the call has its outcome
	began time.Duration // when, after start, EventWaiting was reported; 0 if it was not
}

// watchWait starts watching, in w (storage the caller owns, so that
// watching allocates nothing), a call that may wait: the backend (by
// Request.OnWait), the local queue, a strategy's second try, or the
// Locker's queue of attempts after Options.WaitingAfter report the wait. It returns nil
// when there is no hook or the call cannot wait; w then stays unused.
func (l *Locker) watchWait(ctx context.Context, k store.Key, cfg callConfig, start time.Time, w *waitWatch) *waitWatch {
	if l.hook == nil || cfg.wait == 0 {
		return nil
	}
	if _, ok := cfg.strategy.(nonBlocking); ok {
		return nil
	}
	w.l, w.ctx, w.key, w.mode, w.start = l, ctx, k.String, cfg.mode, start
	if after := l.opts.waitingAfter(); after > 0 {
		w.node.Owner = w
		l.waits.Push(&w.node, start.Add(after))
	}
	return w
}

// notifier is the Request.OnWait of the watched call, or nil.
func (w *waitWatch) notifier() store.WaitNotifier {
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
	w.began = max(time.Since(w.start), 1) // never 0, which means "did not wait"
	w.l.emit(w.ctx, Event{Kind: EventWaiting, Key: w.key, Mode: w.mode, Wait: w.began})
}

// finish ends the watch before the outcome is reported; a report running
// on the timer completes first. It returns when, after the call's start,
// the wait was reported (0 if it was not), for the outcome's
// Event.WaitBegan. A watch that never started (w.l nil) gives 0.
func (w *waitWatch) finish() time.Duration {
	if w == nil || w.l == nil {
		return 0
	}
	w.l.waits.Remove(&w.node)
	w.mu.Lock()
	defer w.mu.Unlock()
	w.done = true
	return w.began
}

// waitDue reports the wait of an attempt that fell due in the Locker's
// queue of attempts.
func waitDue(n *due.Node) { n.Owner.(*waitWatch).NotifyWait() }
