package kannukiprom_test

import (
	"context"
	"strings"
	"testing"

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
