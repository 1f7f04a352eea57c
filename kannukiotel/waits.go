package kannukiotel

import (
	"context"
	"reflect"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kannuki-go/kannuki"
)

// waits pairs each EventWaiting with the outcome of the same call, so that
// the acquire span can mark when the wait began. Events carry no call
// identity: a call is told by its context (when that is a pointer, as
// every context of the standard library but Background and TODO is), its
// key and mode, and its start, which both events give (the time of the
// event less Event.Wait). The outcome looks here only while some call is
// marked, which needs contention: an uncontended cycle pays one atomic
// load.
type waits struct {
	n  atomic.Int64 // marks kept
	mu sync.Mutex
	m  map[waitKey][]waitMark
}

type waitKey struct {
	ctx  context.Context // nil unless a pointer, which is always comparable
	key  string
	mode int
}

type waitMark struct {
	start time.Time     // the call's start, on the hook's clock
	wait  time.Duration // Event.Wait of EventWaiting: from the start to the wait
}

// The two events put a call's start within the time the Locker and the
// hooks before this one spend between reading the clock and calling this
// one of each other: microseconds, unless the goroutine is descheduled in
// between, which matchSlack allows for. Calls on one key and context that
// start within matchSlack of each other may swap marks, which moves each
// span event by less than that.
const matchSlack = 10 * time.Millisecond

// maxMarks bounds the marks kept. Every mark is taken by its call's
// outcome; events fed by hand, or a clock stalled beyond matchSlack, could
// leave some behind, so past the bound all are dropped.
const maxMarks = 1 << 14

func newWaitKey(ctx context.Context, e *kannuki.Event, mi int) waitKey {
	k := waitKey{key: e.Key, mode: mi}
	if ctx != nil && reflect.TypeOf(ctx).Kind() == reflect.Pointer {
		k.ctx = ctx
	}
	return k
}

// mark keeps the EventWaiting e, received at now.
func (w *waits) mark(ctx context.Context, e *kannuki.Event, mi int, now time.Time) {
	k := newWaitKey(ctx, e, mi)
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.m == nil || w.n.Load() >= maxMarks {
		w.m = make(map[waitKey][]waitMark)
		w.n.Store(0)
	}
	w.m[k] = append(w.m[k], waitMark{start: now.Add(-e.Wait), wait: e.Wait})
	w.n.Add(1)
}

// take removes the mark of the call whose outcome e was received at now
// and returns when, after its start, the call began to wait; -1 if it did
// not report waiting.
func (w *waits) take(ctx context.Context, e *kannuki.Event, mi int, now time.Time) time.Duration {
	if w.n.Load() == 0 {
		return -1
	}
	k := newWaitKey(ctx, e, mi)
	start := now.Add(-e.Wait)
	w.mu.Lock()
	defer w.mu.Unlock()
	marks := w.m[k]
	best, bestGap := -1, matchSlack+1
	for i, m := range marks {
		if m.wait > e.Wait {
			continue // waited longer than this call has run: another call
		}
		gap := m.start.Sub(start)
		if gap < 0 {
			gap = -gap
		}
		if gap < bestGap {
			best, bestGap = i, gap
		}
	}
	if best < 0 {
		return -1
	}
	wait := marks[best].wait
	marks[best] = marks[len(marks)-1]
	if marks = marks[:len(marks)-1]; len(marks) == 0 {
		delete(w.m, k)
	} else {
		w.m[k] = marks
	}
	w.n.Add(-1)
	return wait
}
