package hooktest

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/kannuki-go/kannuki/store"

	"github.com/kannuki-go/kannuki"
)

// step is an expected event: its kind and, for a refusal, the reason.
type step struct {
	kind   kannuki.EventKind
	reason kannuki.Reason
}

var (
	attempt  = step{kind: kannuki.EventAttempt}
	acquired = step{kind: kannuki.EventAcquired}
	released = step{kind: kannuki.EventReleased}
	lost     = step{kind: kannuki.EventLost}
)

func refused(r kannuki.Reason) step { return step{kind: kannuki.EventNotAcquired, reason: r} }

// Traffic drives one key on PostgreSQL through every outcome a test can
// cause on purpose, each call tagged in its context (see As):
//
//	holder   acquires and keeps the lock while the others try
//	try      one try while held: refused, held
//	timeout  waits 20ms while held: refused, timeout
//	canceled waits until canceled: refused, canceled
//	waiter   waits until the holder releases: acquired
//	lost     acquires, then its session is killed: lost
//
// l must run on env.Backend. Traffic returns the time the holder kept the
// lock while the waiter was waiting, as the holder measured it, and calls
// during() while the holder holds and the waiter waits.
func Traffic(ctx context.Context, t *testing.T, env *Env, l *kannuki.Locker, key string, during func()) (kept time.Duration) {
	t.Helper()
	k, err := l.Key(key)
	if err != nil {
		t.Fatal(err)
	}
	h, err := l.Acquire(As(ctx, "holder"), key)
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := l.TryLock(As(ctx, "try"), key, Nothing); ok || err != nil {
		t.Fatalf("TryLock while held = %v, %v; want false, nil", ok, err)
	}
	if err := l.WithLock(As(ctx, "timeout"), key, Nothing, kannuki.Timeout(20*time.Millisecond)); !errors.Is(err, store.ErrNotAcquired) {
		t.Fatalf("WithLock with a timeout while held = %v, want ErrNotAcquired", err)
	}

	done := make(chan error, 1)
	cctx, cancel := context.WithCancel(As(ctx, "canceled"))
	go func() { done <- l.WithLock(cctx, key, Nothing) }()
	env.AwaitWaiting(t, k)
	cancel()
	if err := receive(t, done); !errors.Is(err, context.Canceled) {
		t.Fatalf("canceled WithLock = %v, want context.Canceled", err)
	}
	env.AwaitNotWaiting(t, k)

	go func() { done <- l.WithLock(As(ctx, "waiter"), key, Nothing) }()
	env.AwaitWaiting(t, k)
	// From here the waiter is queued on the server, so its wait began
	// before t0 and cannot end before the holder's release.
	t0 := time.Now()
	during()
	time.Sleep(30 * time.Millisecond) // a hold the waiter must sit out
	kept = time.Since(t0)
	if err := h.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if err := receive(t, done); err != nil {
		t.Fatalf("waiter: %v", err)
	}

	hl, err := l.Acquire(As(ctx, "lost"), key)
	if err != nil {
		t.Fatal(err)
	}
	env.Kill(t, k)
	select {
	case <-hl.Lost():
	case <-time.After(10 * time.Second):
		t.Fatal("the lost lock was not noticed within 10s")
	}
	if err := hl.Release(ctx); !errors.Is(err, store.ErrLockLost) {
		t.Fatalf("Release of a lost lock = %v, want ErrLockLost", err)
	}
	return kept
}

// receive waits for a call to end, failing after 10 s.
func receive(t *testing.T, done <-chan error) error {
	t.Helper()
	select {
	case err := <-done:
		return err
	case <-time.After(10 * time.Second):
		t.Fatal("call still running after 10s")
		return nil
	}
}

// wantSteps is what Traffic makes each call emit, in order.
var wantSteps = map[string][]step{
	"holder":   {attempt, acquired, released},
	"try":      {attempt, refused(kannuki.ReasonHeld)},
	"timeout":  {attempt, refused(kannuki.ReasonTimeout)},
	"canceled": {attempt, refused(kannuki.ReasonCanceled)},
	"waiter":   {attempt, acquired, released},
	"lost":     {attempt, acquired, lost},
}

// CheckSteps fails t unless rec holds, for each call of Traffic, the
// events that call must cause, in order. A call may also report one
// EventWaiting right after its attempt: on PostgreSQL that comes from a
// timer (Options.WaitingAfter), which a loaded machine may fire before a
// slow grant or only after a wait's outcome, so it is allowed, not
// required; a single try must never report it.
func CheckSteps(t *testing.T, rec *Recorder) {
	t.Helper()
	for who, want := range wantSteps {
		got := rec.All(who)
		if len(got) > 1 && got[1].Kind == kannuki.EventWaiting && who != "try" {
			got = append(got[:1:1], got[2:]...)
		}
		if len(got) != len(want) {
			t.Errorf("%s: %d events %v, want %d", who, len(got), got, len(want))
			continue
		}
		for i, e := range got {
			if e.Kind != want[i].kind || e.Reason != want[i].reason {
				t.Errorf("%s: event %d is %s/%s, want %s/%s", who, i, e.Kind, e.Reason, want[i].kind, want[i].reason)
			}
		}
	}
}
