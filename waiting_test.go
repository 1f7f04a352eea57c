package kannuki_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/kannuki-go/kannuki/store"

	"github.com/kannuki-go/kannuki"
	"github.com/kannuki-go/kannuki/kannukimem"
)

// eventLog records events and signals each EventWaiting.
type eventLog struct {
	mu      sync.Mutex
	events  []kannuki.Event
	waiting chan struct{}
}

func newEventLog() *eventLog { return &eventLog{waiting: make(chan struct{}, 16)} }

func (r *eventLog) LockEvent(_ context.Context, e kannuki.Event) {
	r.mu.Lock()
	r.events = append(r.events, e)
	r.mu.Unlock()
	if e.Kind == kannuki.EventWaiting {
		r.waiting <- struct{}{}
	}
}

func (r *eventLog) kinds() []kannuki.EventKind {
	r.mu.Lock()
	defer r.mu.Unlock()
	var ks []kannuki.EventKind
	for _, e := range r.events {
		ks = append(ks, e.Kind)
	}
	return ks
}

func (r *eventLog) first(k kannuki.EventKind) kannuki.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, e := range r.events {
		if e.Kind == k {
			return e
		}
	}
	return kannuki.Event{}
}

// awaitWaiting fails t unless an EventWaiting arrives within 10 s.
func (r *eventLog) awaitWaiting(t *testing.T) {
	t.Helper()
	select {
	case <-r.waiting:
	case <-time.After(10 * time.Second):
		t.Fatalf("no EventWaiting within 10s; events %v", r.kinds())
	}
}

// checkWaiterEvents runs a waiter through l while holder holds key, waits
// for its EventWaiting before releasing, and checks the waiter's events.
func checkWaiterEvents(t *testing.T, holder, waiter *kannuki.Locker, rec *eventLog) {
	t.Helper()
	ctx := context.Background()
	h, err := holder.Acquire(ctx, "k")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- waiter.WithLock(ctx, "k", func(context.Context) error { return nil }) }()
	rec.awaitWaiting(t)
	select {
	case err := <-done:
		t.Fatalf("waiter returned %v while the lock was held", err)
	default:
	}
	time.Sleep(5 * time.Millisecond) // a hold the waiter sits out after its report
	if err := h.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	want := []kannuki.EventKind{kannuki.EventAttempt, kannuki.EventWaiting, kannuki.EventAcquired, kannuki.EventReleased}
	if got := rec.kinds(); !equalKinds(got, want) {
		t.Fatalf("waiter's events %v, want %v", got, want)
	}
	if w, a := rec.first(kannuki.EventWaiting).Wait, rec.first(kannuki.EventAcquired).Wait; w > a || a < 5*time.Millisecond {
		t.Errorf("waiting reported after %s, acquired after %s: want waiting <= acquired and acquired >= 5ms", w, a)
	}
	if w, b := rec.first(kannuki.EventWaiting).Wait, rec.first(kannuki.EventAcquired).WaitBegan; w != b {
		t.Errorf("EventAcquired.WaitBegan %s, want the EventWaiting's %s", b, w)
	}
}

func equalKinds(a, b []kannuki.EventKind) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestWaitingToldByLocalQueue(t *testing.T) {
	rec := newEventLog()
	// One Locker, so that the waiter queues in the process; the hook keeps
	// only the waiter's events, told apart by its context.
	l := kannuki.New(kannukimem.New(), kannuki.Options{Hook: onlyTagged{rec}, WaitingAfter: -1})
	ctx := context.Background()
	h, err := l.Acquire(ctx, "k")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	wctx := context.WithValue(ctx, tagKey{}, true)
	go func() { done <- l.WithLock(wctx, "k", func(context.Context) error { return nil }) }()
	rec.awaitWaiting(t)
	if err := h.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	want := []kannuki.EventKind{kannuki.EventAttempt, kannuki.EventWaiting, kannuki.EventAcquired, kannuki.EventReleased}
	if got := rec.kinds(); !equalKinds(got, want) {
		t.Fatalf("waiter's events %v, want %v", got, want)
	}
}

type tagKey struct{}

// onlyTagged passes on the events of calls whose context carries tagKey.
type onlyTagged struct{ inner kannuki.Hook }

func (o onlyTagged) LockEvent(ctx context.Context, e kannuki.Event) {
	if ctx.Value(tagKey{}) != nil {
		o.inner.LockEvent(ctx, e)
	}
}

func TestWaitingToldByBackend(t *testing.T) {
	be := kannukimem.New()
	rec := newEventLog()
	holder := kannuki.New(be, kannuki.Options{})
	// WaitingAfter < 0: only a wait the backend tells of is reported.
	waiter := kannuki.New(be, kannuki.Options{Hook: rec, WaitingAfter: -1})
	checkWaiterEvents(t, holder, waiter, rec)
}

func TestWaitingAfterForSilentBackends(t *testing.T) {
	be := newChanBackend() // never calls Request.OnWait
	rec := newEventLog()
	holder := kannuki.New(be, kannuki.Options{})
	waiter := kannuki.New(be, kannuki.Options{Hook: rec, WaitingAfter: time.Millisecond})
	checkWaiterEvents(t, holder, waiter, rec)
}

func TestWaitingNotReported(t *testing.T) {
	ctx := context.Background()
	nothing := func(context.Context) error { return nil }
	t.Run("silent backend, WaitingAfter negative", func(t *testing.T) {
		be := newChanBackend()
		rec := newEventLog()
		holder := kannuki.New(be, kannuki.Options{})
		waiter := kannuki.New(be, kannuki.Options{Hook: rec, WaitingAfter: -1})
		h, err := holder.Acquire(ctx, "k")
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- waiter.WithLock(ctx, "k", nothing) }()
		time.Sleep(20 * time.Millisecond)
		if err := h.Release(ctx); err != nil {
			t.Fatal(err)
		}
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		want := []kannuki.EventKind{kannuki.EventAttempt, kannuki.EventAcquired, kannuki.EventReleased}
		if got := rec.kinds(); !equalKinds(got, want) {
			t.Fatalf("events %v, want %v", got, want)
		}
	})
	t.Run("single try", func(t *testing.T) {
		be := kannukimem.New()
		rec := newEventLog()
		holder := kannuki.New(be, kannuki.Options{})
		tryer := kannuki.New(be, kannuki.Options{Hook: rec, WaitingAfter: time.Nanosecond})
		h, err := holder.Acquire(ctx, "k")
		if err != nil {
			t.Fatal(err)
		}
		defer h.Release(ctx)
		for range 50 {
			if ok, err := tryer.TryLock(ctx, "k", nothing); ok || err != nil {
				t.Fatal(ok, err)
			}
			if err := tryer.WithLock(ctx, "k", nothing, kannuki.Timeout(0)); err == nil {
				t.Fatal("Timeout(0) acquired a held lock")
			}
		}
		for _, k := range rec.kinds() {
			if k == kannuki.EventWaiting {
				t.Fatalf("a single try reported EventWaiting: %v", rec.kinds())
			}
		}
	})
}

func TestWaitingToldByRetry(t *testing.T) {
	be := newChanBackend()
	rec := newEventLog()
	holder := kannuki.New(be, kannuki.Options{})
	retry := kannuki.Retry{Attempts: 1000, Interval: time.Millisecond, Multiplier: 1}
	waiter := kannuki.New(be, kannuki.Options{Hook: rec, WaitingAfter: -1, Strategy: retry})
	checkWaiterEvents(t, holder, waiter, rec)
}

// callKey tags each call's context with its number.
type callKey struct{}

// seqCheck records each call's events and reports any out of order.
type seqCheck struct {
	mu   sync.Mutex
	seen map[int][]kannuki.EventKind
}

func (c *seqCheck) LockEvent(ctx context.Context, e kannuki.Event) {
	n, _ := ctx.Value(callKey{}).(int)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.seen[n] = append(c.seen[n], e.Kind)
}

func TestWaitingOrderUnderContention(t *testing.T) {
	for _, be := range []store.Backend{newChanBackend(), kannukimem.New()} {
		chk := &seqCheck{seen: map[int][]kannuki.EventKind{}}
		// Several Lockers on one backend, so that waits happen in the
		// backend (and the scan), not only in one local queue.
		var ls []*kannuki.Locker
		for range 3 {
			ls = append(ls, kannuki.New(be, kannuki.Options{Hook: chk, WaitingAfter: time.Microsecond}))
		}
		var wg sync.WaitGroup
		for g := range 12 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range 100 {
					ctx := context.WithValue(context.Background(), callKey{}, g*1000+i+1)
					err := ls[g%3].WithLock(ctx, "hot", func(context.Context) error { return nil }, kannuki.Timeout(time.Duration(i%3)*time.Millisecond))
					if err != nil && !errors.Is(err, kannuki.ErrNotAcquired) {
						t.Error(err)
					}
				}
			}()
		}
		wg.Wait()
		waits := 0
		for n, kinds := range chk.seen {
			if kinds[0] != kannuki.EventAttempt {
				t.Fatalf("call %d: events %v do not start with attempt", n, kinds)
			}
			rest := kinds[1:]
			if len(rest) > 0 && rest[0] == kannuki.EventWaiting {
				waits++
				rest = rest[1:]
			}
			ok := len(rest) == 1 && rest[0] == kannuki.EventNotAcquired ||
				len(rest) == 2 && rest[0] == kannuki.EventAcquired && rest[1] == kannuki.EventReleased
			if !ok {
				t.Fatalf("call %d: events %v out of order", n, kinds)
			}
		}
		if len(chk.seen) != 1200 {
			t.Fatalf("%d calls reported, want 1200", len(chk.seen))
		}
		t.Logf("%T: %d of 1200 calls reported a wait", be, waits)
	}
}

// TestWaitingNotAfterInTxGrant: InTx reports its grant from inside the
// transaction, while fn runs; the waiting report must be over by then,
// however long fn takes.
func TestWaitingNotAfterInTxGrant(t *testing.T) {
	rec := newEventLog()
	l := kannuki.New(txChanBackend{newChanBackend()}, kannuki.Options{Hook: rec, WaitingAfter: time.Millisecond})
	err := kannuki.InTx(context.Background(), l, "k", func(context.Context, *memTx) error {
		time.Sleep(30 * time.Millisecond) // thirty WaitingAfter periods inside the transaction
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	got := rec.kinds()
	if got[0] != kannuki.EventAttempt || got[len(got)-2] != kannuki.EventAcquired || got[len(got)-1] != kannuki.EventReleased {
		t.Fatalf("InTx events %v", got)
	}
	for _, k := range got[2 : len(got)-1] {
		if k == kannuki.EventWaiting {
			t.Fatalf("EventWaiting after the grant: %v", got)
		}
	}
}
