package kannukiprom_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/kannuki-go/kannuki"
	"github.com/kannuki-go/kannuki/kannukimem"
	"github.com/kannuki-go/kannuki/kannukiprom"
)

// memCycle returns one uncontended WithLock cycle on kannukimem. The
// keepalive is off so that its goroutine does not blur the figures.
func memCycle(tb testing.TB, h kannuki.Hook) func() {
	l := kannuki.New(kannukimem.New(), kannuki.Options{Hook: h, KeepaliveInterval: -1})
	ctx, key := context.Background(), uniqueKey(tb)
	return func() {
		if err := l.WithLock(ctx, key, nothing); err != nil {
			tb.Fatal(err)
		}
	}
}

// TestNoAllocs: once its series exist, the Collector adds no allocation to
// a cycle, and neither do the events with no hook at all.
func TestNoAllocs(t *testing.T) {
	none := testing.AllocsPerRun(200, memCycle(t, nil))
	var sink time.Duration
	reader := kannuki.HookFunc(func(_ context.Context, e kannuki.Event) { sink += e.Wait + e.Hold })
	withReader := testing.AllocsPerRun(200, memCycle(t, reader))
	withProm := testing.AllocsPerRun(200, memCycle(t, kannukiprom.New(kannukiprom.Options{})))
	t.Logf("allocations per WithLock cycle on kannukimem: no hook %v, event-reading hook %v, kannukiprom %v", none, withReader, withProm)
	if withReader != none {
		t.Errorf("delivering events costs %v allocations per cycle, want 0", withReader-none)
	}
	if withProm != none {
		t.Errorf("kannukiprom costs %v allocations per cycle, want 0", withProm-none)
	}
	_ = sink
}

// BenchmarkEvents is the Collector's own cost for the three events of an
// uncontended cycle (attempt, acquired, released).
func BenchmarkEvents(b *testing.B) {
	c := kannukiprom.New(kannukiprom.Options{})
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		c.LockEvent(ctx, kannuki.Event{Kind: kannuki.EventAttempt, Key: "k"})
		c.LockEvent(ctx, kannuki.Event{Kind: kannuki.EventAcquired, Key: "k", Wait: 300 * time.Microsecond})
		c.LockEvent(ctx, kannuki.Event{Kind: kannuki.EventReleased, Key: "k", Hold: 2 * time.Millisecond})
	}
}

// BenchmarkCyclePostgres times the uncontended WithLock cycle on
// PostgreSQL (kannukipg over pgx/stdlib) with and without the Collector,
// alternating the two in each iteration so that the load of a shared
// machine falls on both alike. Metrics: ns per cycle of each, and their
// ratio.
func BenchmarkCyclePostgres(b *testing.B) {
	env := newPGEnv(b)
	plain := kannuki.New(env.backend, kannuki.Options{})
	hooked := kannuki.New(env.backend, kannuki.Options{Hook: kannukiprom.New(kannukiprom.Options{})})
	pairedCycles(b, plain, hooked)
}

// pairedCycles runs a cycle on a and one on b per iteration, in alternating
// order, and reports both times and b's relative to a's.
func pairedCycles(bm *testing.B, a, b *kannuki.Locker) {
	ctx, keyA, keyB := context.Background(), uniqueKey(bm), uniqueKey(bm)
	cycle := func(l *kannuki.Locker, key string) time.Duration {
		start := time.Now()
		if err := l.WithLock(ctx, key, nothing); err != nil {
			bm.Fatal(err)
		}
		return time.Since(start)
	}
	var ta, tb []time.Duration
	for bm.Loop() {
		if len(ta)%2 == 0 {
			ta = append(ta, cycle(a, keyA))
			tb = append(tb, cycle(b, keyB))
		} else {
			tb = append(tb, cycle(b, keyB))
			ta = append(ta, cycle(a, keyA))
		}
	}
	reportPaired(bm, ta, tb)
}

// reportPaired reports the median cycle of each Locker and their ratio.
// Medians, because on a shared machine a few cycles stall for
// milliseconds and would swamp a mean.
func reportPaired(bm *testing.B, ta, tb []time.Duration) {
	median := func(d []time.Duration) float64 {
		slices.Sort(d)
		return float64(d[len(d)/2].Nanoseconds())
	}
	ma, mb := median(ta), median(tb)
	bm.ReportMetric(0, "ns/op")
	bm.ReportMetric(ma, "median-ns/cycle-plain")
	bm.ReportMetric(mb, "median-ns/cycle-hooked")
	bm.ReportMetric(mb/ma, "hooked/plain")
}
