package kannukiprom_test

import (
	"context"
	"strings"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // database/sql driver "pgx"
	"github.com/kannuki-go/kannuki"
	"github.com/kannuki-go/kannuki/internal/hooktest"
	"github.com/kannuki-go/kannuki/kannukiprom"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// uniqueKey is a key no other test (or concurrent test run) uses.
func uniqueKey(t testing.TB) string { return hooktest.UniqueKey(t, "kannukiprom-test") }

// newRegistry registers cs on a pedantic registry, which checks that what
// they collect matches what they describe.
func newRegistry(t testing.TB, cs ...prometheus.Collector) *prometheus.Registry {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	for _, c := range cs {
		if err := reg.Register(c); err != nil {
			t.Fatal(err)
		}
	}
	return reg
}

// gather registers c alone and returns its metric families by name.
func gather(t testing.TB, c prometheus.Collector) map[string]*dto.MetricFamily {
	t.Helper()
	mfs, err := newRegistry(t, c).Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]*dto.MetricFamily{}
	for _, mf := range mfs {
		out[mf.GetName()] = mf
	}
	return out
}

// label returns the value of a metric's label, or "".
func label(m *dto.Metric, name string) string {
	for _, lp := range m.GetLabel() {
		if lp.GetName() == name {
			return lp.GetValue()
		}
	}
	return ""
}

func TestTraffic(t *testing.T) {
	env := hooktest.NewEnv(t, "pgx")
	c := kannukiprom.New(kannukiprom.Options{ConstLabels: prometheus.Labels{"backend": "postgresql"}})
	rec := &hooktest.Recorder{}
	l := kannuki.New(env.Backend, kannuki.Options{
		// One Locker plays several processes: its callers must queue in
		// PostgreSQL, where the test watches them, not in the local queue.
		NoLocalQueue:      true,
		Hook:              kannuki.Hooks(rec, c),
		KeepaliveInterval: 20 * time.Millisecond,
	})
	key := uniqueKey(t)

	kept := hooktest.Traffic(context.Background(), t, env, l, key, func() {
		const want = `
# HELP kannuki_lock_waiters Calls acquiring a lock now (trying or waiting).
# TYPE kannuki_lock_waiters gauge
kannuki_lock_waiters{backend="postgresql"} 1
# HELP kannuki_locks_held Locks held now by this process.
# TYPE kannuki_locks_held gauge
kannuki_locks_held{backend="postgresql"} 1
`
		if err := testutil.CollectAndCompare(c, strings.NewReader(want), "kannuki_locks_held", "kannuki_lock_waiters"); err != nil {
			t.Errorf("while the waiter waits: %v", err)
		}
	})
	hooktest.CheckSteps(t, rec)

	// Counters and gauges are exact.
	const want = `
# HELP kannuki_jobs_skipped_total Jobs skipped as duplicates because their lock was held.
# TYPE kannuki_jobs_skipped_total counter
kannuki_jobs_skipped_total{backend="postgresql"} 0
# HELP kannuki_lock_acquisitions_total Finished lock acquisitions by mode and outcome (acquired, or why not).
# TYPE kannuki_lock_acquisitions_total counter
kannuki_lock_acquisitions_total{backend="postgresql",mode="exclusive",outcome="acquired"} 3
kannuki_lock_acquisitions_total{backend="postgresql",mode="exclusive",outcome="canceled"} 1
kannuki_lock_acquisitions_total{backend="postgresql",mode="exclusive",outcome="held"} 1
kannuki_lock_acquisitions_total{backend="postgresql",mode="exclusive",outcome="timeout"} 1
# HELP kannuki_lock_lost_total Locks lost while held (connection killed, database restarted).
# TYPE kannuki_lock_lost_total counter
kannuki_lock_lost_total{backend="postgresql"} 1
# HELP kannuki_lock_waiters Calls acquiring a lock now (trying or waiting).
# TYPE kannuki_lock_waiters gauge
kannuki_lock_waiters{backend="postgresql"} 0
# HELP kannuki_locks_held Locks held now by this process.
# TYPE kannuki_locks_held gauge
kannuki_locks_held{backend="postgresql"} 0
`
	if err := testutil.CollectAndCompare(c, strings.NewReader(want),
		"kannuki_lock_acquisitions_total", "kannuki_locks_held", "kannuki_lock_waiters",
		"kannuki_lock_lost_total", "kannuki_jobs_skipped_total"); err != nil {
		t.Error(err)
	}

	// Histograms: counts are exact; values are checked against what the
	// holder measured, as lower bounds only.
	mfs := gather(t, c)
	waitCount := map[string]uint64{}
	for _, m := range mfs["kannuki_lock_wait_seconds"].GetMetric() {
		h := m.GetHistogram()
		o := label(m, "outcome")
		waitCount[o] += h.GetSampleCount()
		if o != "acquired" {
			continue
		}
		if h.GetSampleSum() < kept.Seconds() {
			t.Errorf("acquired waits sum to %gs < %gs the holder kept the lock", h.GetSampleSum(), kept.Seconds())
		}
		// The holder's and the lost call's grants were immediate; the
		// waiter's wait is at least kept: at least one value lies above
		// every bucket bound below kept.
		var below uint64
		for _, b := range h.GetBucket() {
			if b.GetUpperBound() < kept.Seconds() {
				below = b.GetCumulativeCount()
			}
		}
		if below > 2 {
			t.Errorf("%d of 3 acquired waits are below %s, want at most 2", below, kept)
		}
	}
	if want := map[string]uint64{"acquired": 3, "held": 1, "timeout": 1, "canceled": 1}; !equalCounts(waitCount, want) {
		t.Errorf("wait histogram counts %v, want %v", waitCount, want)
	}
	holds := mfs["kannuki_lock_hold_seconds"].GetMetric()
	if len(holds) != 1 || holds[0].GetHistogram().GetSampleCount() != 3 || holds[0].GetHistogram().GetSampleSum() < kept.Seconds() {
		t.Errorf("hold histogram %v, want 3 values summing to >= %s", holds, kept)
	}

	// No key in any label; the const label on every series.
	for name, mf := range mfs {
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if strings.Contains(lp.GetValue(), key) || lp.GetName() == "key" {
					t.Errorf("%s carries the key in label %s", name, lp.GetName())
				}
			}
			if label(m, "backend") != "postgresql" {
				t.Errorf("%s misses the const label: %v", name, m.GetLabel())
			}
		}
	}
	if problems, err := testutil.CollectAndLint(c); err != nil || len(problems) > 0 {
		t.Errorf("lint: %v %v", problems, err)
	}
}

func equalCounts(a, b map[string]uint64) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}
