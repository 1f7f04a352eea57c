package kannukiprom_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/kannuki-go/kannuki/store"

	"github.com/kannuki-go/kannuki"
	"github.com/kannuki-go/kannuki/internal/hooktest"
	"github.com/kannuki-go/kannuki/kannukimem"
	"github.com/kannuki-go/kannuki/kannukiprom"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// These tests need no database: they cover what PostgreSQL traffic in
// collector_test.go does not reach on purpose.

// TestSharedSkippedUnknown: shared acquisitions carry mode="shared",
// skipped jobs are counted, and a Reason newer than this package is
// counted as "unknown", not dropped.
func TestSharedSkippedUnknown(t *testing.T) {
	c := kannukiprom.New(kannukiprom.Options{})
	l := kannuki.New(kannukimem.New(), kannuki.Options{Hook: c})
	ctx := context.Background()
	if err := l.WithLock(ctx, uniqueKey(t), hooktest.Nothing, kannuki.Shared()); err != nil {
		t.Fatal(err)
	}
	c.LockEvent(ctx, kannuki.Event{Kind: kannuki.EventSkipped, Key: "job/42"})
	c.LockEvent(ctx, kannuki.Event{Kind: kannuki.EventAttempt, Key: "job/42"})
	c.LockEvent(ctx, kannuki.Event{Kind: kannuki.EventNotAcquired, Key: "job/42", Reason: 200})

	const want = `
# HELP kannuki_jobs_skipped_total Jobs skipped as duplicates because their lock was held.
# TYPE kannuki_jobs_skipped_total counter
kannuki_jobs_skipped_total 1
# HELP kannuki_lock_acquisitions_total Finished lock acquisitions by mode and outcome (acquired, or why not).
# TYPE kannuki_lock_acquisitions_total counter
kannuki_lock_acquisitions_total{mode="exclusive",outcome="unknown"} 1
kannuki_lock_acquisitions_total{mode="shared",outcome="acquired"} 1
# HELP kannuki_lock_waiters Calls acquiring a lock now (trying or waiting).
# TYPE kannuki_lock_waiters gauge
kannuki_lock_waiters 0
# HELP kannuki_locks_held Locks held now by this process.
# TYPE kannuki_locks_held gauge
kannuki_locks_held 0
`
	if err := testutil.CollectAndCompare(c, strings.NewReader(want),
		"kannuki_jobs_skipped_total", "kannuki_lock_acquisitions_total", "kannuki_lock_waiters", "kannuki_locks_held"); err != nil {
		t.Error(err)
	}
	if n := testutil.CollectAndCount(c, "kannuki_lock_hold_seconds"); n != 1 {
		t.Errorf("%d hold series, want 1 (shared)", n)
	}
}

// TestTwoCollectors: Collectors told apart by const labels register side
// by side, as for two Lockers in one program.
func TestTwoCollectors(t *testing.T) {
	a := kannukiprom.New(kannukiprom.Options{ConstLabels: map[string]string{"locker": "a"}})
	b := kannukiprom.New(kannukiprom.Options{ConstLabels: map[string]string{"locker": "b"}})
	reg := newRegistry(t, a, b)
	if _, err := reg.Gather(); err != nil {
		t.Fatal(err)
	}
}

// TestWaiting: EventWaiting counts a contended acquisition by mode, and
// leaves the waiters gauge alone (the call joined it at its attempt).
func TestWaiting(t *testing.T) {
	c := kannukiprom.New(kannukiprom.Options{})
	ctx := context.Background()
	shared := store.ModeShared
	c.LockEvent(ctx, kannuki.Event{Kind: kannuki.EventAttempt, Key: "a"})
	c.LockEvent(ctx, kannuki.Event{Kind: kannuki.EventAttempt, Key: "b", Mode: shared})
	c.LockEvent(ctx, kannuki.Event{Kind: kannuki.EventWaiting, Key: "a", Wait: 5 * time.Millisecond})
	c.LockEvent(ctx, kannuki.Event{Kind: kannuki.EventWaiting, Key: "b", Mode: shared, Wait: 5 * time.Millisecond})
	const during = `
# HELP kannuki_lock_contended_total Lock acquisitions that found the lock held and waited for it, by mode.
# TYPE kannuki_lock_contended_total counter
kannuki_lock_contended_total{mode="exclusive"} 1
kannuki_lock_contended_total{mode="shared"} 1
# HELP kannuki_lock_waiters Calls acquiring a lock now (trying or waiting).
# TYPE kannuki_lock_waiters gauge
kannuki_lock_waiters 2
`
	if err := testutil.CollectAndCompare(c, strings.NewReader(during), "kannuki_lock_contended_total", "kannuki_lock_waiters"); err != nil {
		t.Errorf("while waiting: %v", err)
	}
	c.LockEvent(ctx, kannuki.Event{Kind: kannuki.EventAcquired, Key: "a", Wait: 30 * time.Millisecond})
	c.LockEvent(ctx, kannuki.Event{Kind: kannuki.EventNotAcquired, Key: "b", Mode: shared, Wait: 40 * time.Millisecond, Reason: kannuki.ReasonTimeout})
	// An uncontended cycle is not counted.
	c.LockEvent(ctx, kannuki.Event{Kind: kannuki.EventAttempt, Key: "c"})
	c.LockEvent(ctx, kannuki.Event{Kind: kannuki.EventAcquired, Key: "c"})
	const after = `
# HELP kannuki_lock_contended_total Lock acquisitions that found the lock held and waited for it, by mode.
# TYPE kannuki_lock_contended_total counter
kannuki_lock_contended_total{mode="exclusive"} 1
kannuki_lock_contended_total{mode="shared"} 1
# HELP kannuki_lock_waiters Calls acquiring a lock now (trying or waiting).
# TYPE kannuki_lock_waiters gauge
kannuki_lock_waiters 0
`
	if err := testutil.CollectAndCompare(c, strings.NewReader(after), "kannuki_lock_contended_total", "kannuki_lock_waiters"); err != nil {
		t.Errorf("after the outcomes: %v", err)
	}
	if problems, err := testutil.CollectAndLint(c); err != nil || len(problems) > 0 {
		t.Errorf("lint: %v %v", problems, err)
	}
}

// TestWaitingOnMemory: a Locker on kannukimem reports the wait of a call
// that finds the lock held, and the Collector counts it.
func TestWaitingOnMemory(t *testing.T) {
	c := kannukiprom.New(kannukiprom.Options{})
	l := kannuki.New(kannukimem.New(), kannuki.Options{Hook: c})
	ctx := context.Background()
	key := uniqueKey(t)
	h, err := l.Acquire(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- l.WithLock(ctx, key, hooktest.Nothing) }()
	deadline := time.Now().Add(10 * time.Second)
	for contended(t, c) == 0 {
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
}

// contended sums kannuki_lock_contended_total over its series.
func contended(t testing.TB, c *kannukiprom.Collector) float64 {
	var n float64
	for _, m := range gather(t, c)["kannuki_lock_contended_total"].GetMetric() {
		n += m.GetCounter().GetValue()
	}
	return n
}
