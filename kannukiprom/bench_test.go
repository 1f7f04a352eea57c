package kannukiprom_test

import (
	"context"
	"testing"
	"time"

	"github.com/kannuki-go/kannuki"
	"github.com/kannuki-go/kannuki/internal/hooktest"
	"github.com/kannuki-go/kannuki/kannukiprom"
)

// TestNoAllocs: once its series exist, the Collector adds no allocation to
// a cycle, and neither do the events with no hook at all.
func TestNoAllocs(t *testing.T) {
	none := testing.AllocsPerRun(200, hooktest.MemCycle(t, nil, uniqueKey(t)))
	var sink time.Duration
	reader := hooktest.Func(func(_ context.Context, e kannuki.Event) { sink += e.Wait + e.Hold })
	withReader := testing.AllocsPerRun(200, hooktest.MemCycle(t, reader, uniqueKey(t)))
	withProm := testing.AllocsPerRun(200, hooktest.MemCycle(t, kannukiprom.New(kannukiprom.Options{}), uniqueKey(t)))
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
// PostgreSQL (kannukipg over pgx/stdlib, one connection, default Locker
// options) without a hook, with one that does nothing (what the Locker
// spends on having a hook) and with the Collector, interleaved in each
// iteration (see hooktest.InterleavedCycles). See examples/metrics for
// the cycle with kannukiotel as well.
func BenchmarkCyclePostgres(b *testing.B) {
	backend := hooktest.SingleConnBackend(b, "pgx")
	with := func(h kannuki.Hook) *kannuki.Locker { return kannuki.New(backend, kannuki.Options{Hook: h}) }
	hooktest.InterleavedCycles(b,
		hooktest.Contender{Name: "nohook", Locker: with(nil)},
		hooktest.Contender{Name: "emptyhook", Locker: with(hooktest.Func(func(context.Context, kannuki.Event) {}))},
		hooktest.Contender{Name: "prom", Locker: with(kannukiprom.New(kannukiprom.Options{}))},
	)
}
