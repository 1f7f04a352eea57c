package kannukiotel_test

import (
	"context"
	"testing"
	"time"

	"github.com/kannuki-go/kannuki"
	"github.com/kannuki-go/kannuki/internal/hooktest"
	"github.com/kannuki-go/kannuki/kannukimem"
	"github.com/kannuki-go/kannuki/kannukiotel"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
)

type ctxKey struct{}

// waitingEvents returns the offsets from sp's start of its waiting events,
// failing on any other event.
func waitingEvents(t *testing.T, sp tracetest.SpanStub) []time.Duration {
	t.Helper()
	var out []time.Duration
	for _, ev := range sp.Events {
		if ev.Name != kannukiotel.SpanEventWaiting {
			t.Errorf("span %s: unexpected event %q", attr(sp, kannukiotel.AttrOutcome), ev.Name)
			continue
		}
		out = append(out, ev.Time.Sub(sp.StartTime))
	}
	return out
}

// TestWaitingSpanEvent feeds the events by hand: each acquire span of a
// call that reported waiting (Event.WaitBegan on its outcome) marks when
// the wait began, even among calls on one key and context, and the
// contended acquisitions are counted.
func TestWaitingSpanEvent(t *testing.T) {
	r := newRig(t, kannukiotel.Options{})
	ctx := context.WithValue(context.Background(), ctxKey{}, "request")
	emit := func(e kannuki.Event) {
		e.Key = "k"
		r.hook.LockEvent(ctx, e)
	}
	// Calls a and b on the same key and context, started a second apart,
	// both wait; c, meanwhile, is refused at once; d, on another key,
	// is granted without waiting.
	startA, startB := time.Now().Add(-3*time.Second), time.Now().Add(-2*time.Second)
	emit(kannuki.Event{Kind: kannuki.EventAttempt})
	emit(kannuki.Event{Kind: kannuki.EventAttempt})
	waitA := time.Since(startA)
	emit(kannuki.Event{Kind: kannuki.EventWaiting, Wait: waitA})
	waitB := time.Since(startB)
	emit(kannuki.Event{Kind: kannuki.EventWaiting, Wait: waitB})
	emit(kannuki.Event{Kind: kannuki.EventAttempt})
	emit(kannuki.Event{Kind: kannuki.EventNotAcquired, Reason: kannuki.ReasonHeld})
	r.hook.LockEvent(ctx, kannuki.Event{Kind: kannuki.EventAttempt, Key: "other"})
	r.hook.LockEvent(ctx, kannuki.Event{Kind: kannuki.EventAcquired, Key: "other", Wait: time.Millisecond})
	// b's outcome comes first.
	emit(kannuki.Event{Kind: kannuki.EventAcquired, Wait: time.Since(startB), WaitBegan: waitB})
	emit(kannuki.Event{Kind: kannuki.EventNotAcquired, Reason: kannuki.ReasonTimeout, Wait: time.Since(startA), WaitBegan: waitA})

	want := map[string]time.Duration{"acquired-k": waitB, "timeout-k": waitA}
	spans := r.spans()
	if len(spans) != 4 {
		t.Fatalf("%d spans, want 4", len(spans))
	}
	for _, sp := range spans {
		name := attr(sp, kannukiotel.AttrOutcome) + "-k"
		if sp.EndTime.Sub(sp.StartTime) < time.Second {
			name = attr(sp, kannukiotel.AttrOutcome) + "-quick"
		}
		got := waitingEvents(t, sp)
		w, waited := want[name]
		switch {
		case !waited && len(got) > 0:
			t.Errorf("span %s: waiting events at %v, want none", name, got)
		case waited && (len(got) != 1 || got[0] != w):
			t.Errorf("span %s: waiting events at %v after its start, want one at %v", name, got, w)
		}
	}
	if got := r.collect(t).sum(t, "kannuki.lock.contended", kannukiotel.AttrMode.String("exclusive")); got != 2 {
		t.Errorf("contended acquisitions = %d, want 2", got)
	}
}

// TestWaitingOnMemory: a Locker on kannukimem reports the wait of a call
// that finds the lock held; its acquire span marks it, between its start
// and its end, and the holder's does not.
func TestWaitingOnMemory(t *testing.T) {
	r := newRig(t, kannukiotel.Options{})
	l := kannuki.New(kannukimem.New(), kannuki.Options{Hook: r.hook})
	ctx := context.Background()
	key := uniqueKey(t)
	h, err := l.Acquire(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- l.WithLock(ctx, key, hooktest.Nothing) }()
	deadline := time.Now().Add(10 * time.Second)
	contended := func() int64 {
		m := r.collect(t)
		if m["kannuki.lock.contended"] == nil {
			return 0 // no series before the first
		}
		return m.sum(t, "kannuki.lock.contended")
	}
	for contended() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no contended acquisition counted after 10s")
		}
		time.Sleep(time.Millisecond)
	}
	if err := h.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	var marked int
	for _, sp := range r.spans() {
		if sp.Name != kannukiotel.SpanAcquire {
			continue
		}
		for _, at := range waitingEvents(t, sp) {
			marked++
			if at < 0 || at > sp.EndTime.Sub(sp.StartTime) {
				t.Errorf("waiting event %v after the start of a span of %v", at, sp.EndTime.Sub(sp.StartTime))
			}
		}
	}
	if marked != 1 {
		t.Errorf("%d waiting events on acquire spans, want 1 (the waiter's)", marked)
	}
}
