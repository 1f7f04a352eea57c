package kannuki

import (
	"context"
	"time"

	"github.com/kannuki-go/kannuki/store"
)

// EventKind names what happened to a lock.
type EventKind uint8

const (
	// EventAttempt: a call starts to acquire a lock.
	EventAttempt EventKind = iota + 1
	// EventAcquired: the lock was granted; Event.Wait is how long it took.
	EventAcquired
	// EventNotAcquired: the lock was not granted; Event.Reason says why.
	EventNotAcquired
	// EventReleased: the lock was given back; Event.Hold is how long it was held.
	EventReleased
	// EventLost: a held lock was lost; Event.Err is the cause.
	EventLost
	// EventSkipped: a job was skipped as a duplicate because its lock was
	// held (see package kannukijob).
	EventSkipped
	// EventWaiting: the lock was found held and the call began to wait for
	// it. Reported at most once per call, between EventAttempt and the
	// outcome; Event.Wait is the time spent so far. See Options.WaitingAfter
	// for how backends that wait inside one statement report it.
	EventWaiting
)

func (k EventKind) String() string {
	switch k {
	case EventAttempt:
		return "attempt"
	case EventAcquired:
		return "acquired"
	case EventNotAcquired:
		return "not_acquired"
	case EventReleased:
		return "released"
	case EventLost:
		return "lost"
	case EventSkipped:
		return "skipped"
	case EventWaiting:
		return "waiting"
	}
	return "unknown"
}

// Event describes one step in a lock's life. It is passed by value; hooks
// must not keep pointers into it beyond the call.
type Event struct {
	Kind EventKind
	Key  string        // the full key, prefix included
	Mode store.Mode    // exclusive or shared
	Wait time.Duration // EventWaiting, EventAcquired, EventNotAcquired: time spent acquiring
	Hold time.Duration // EventReleased, EventLost: time the lock was held
	// WaitBegan, on EventAcquired and EventNotAcquired, is when (after the
	// attempt began) the call reported EventWaiting; 0 if it did not. It
	// lets a hook place the wait without pairing events itself.
	WaitBegan time.Duration
	Reason    Reason // EventNotAcquired
	Err       error  // EventNotAcquired (cause), EventLost, EventReleased (a failed release)
}

// Hook receives lock events. Calls are synchronous, on the locking
// goroutine except for an EventWaiting reported after Options.WaitingAfter,
// which comes from a timer (still before the call's outcome is reported):
// keep them quick and never block. A Hook must be safe for concurrent use.
type Hook interface {
	LockEvent(ctx context.Context, e Event)
}

// HookFunc adapts a function to Hook.
type HookFunc func(ctx context.Context, e Event)

// LockEvent implements Hook.
func (f HookFunc) LockEvent(ctx context.Context, e Event) { f(ctx, e) }

// Hooks fans events out to several hooks in order; nil entries are skipped.
func Hooks(hs ...Hook) Hook {
	var out multiHook
	for _, h := range hs {
		if h != nil {
			out = append(out, h)
		}
	}
	switch len(out) {
	case 0:
		return nil
	case 1:
		return out[0]
	}
	return out
}

type multiHook []Hook

func (m multiHook) LockEvent(ctx context.Context, e Event) {
	for _, h := range m {
		h.LockEvent(ctx, e)
	}
}

// emit calls the hook if there is one; with none it costs a nil check.
func (l *Locker) emit(ctx context.Context, e Event) {
	if l.hook != nil {
		l.hook.LockEvent(ctx, e)
	}
}

// Emit passes e to the Locker's hooks. It is for integrations built on a
// Locker, such as kannukijob reporting a job skipped as a duplicate.
func (l *Locker) Emit(ctx context.Context, e Event) { l.emit(ctx, e) }
