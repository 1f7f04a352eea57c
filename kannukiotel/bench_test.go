package kannukiotel_test

import (
	"context"
	"testing"
	"time"

	"github.com/kannuki-go/kannuki"
	"github.com/kannuki-go/kannuki/internal/hooktest"
	"github.com/kannuki-go/kannuki/kannukiotel"
	"go.opentelemetry.io/otel/metric/noop"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	tracenoop "go.opentelemetry.io/otel/trace/noop"
)

// sdkHook is a Hook on a production-like SDK: spans batched to an exporter
// that drops them, metrics aggregated for a reader.
func sdkHook(tb testing.TB, opts kannukiotel.Options) *kannukiotel.Hook {
	tb.Helper()
	return sampledHook(tb, opts, sdktrace.AlwaysSample())
}

// sampledHook is sdkHook with the given root sampler; nil means no tracing
// (the no-op tracer), metrics only.
func sampledHook(tb testing.TB, opts kannukiotel.Options, sampler sdktrace.Sampler) *kannukiotel.Hook {
	tb.Helper()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader()))
	tb.Cleanup(func() { _ = mp.Shutdown(context.Background()) })
	opts.MeterProvider = mp
	opts.TracerProvider = tracenoop.NewTracerProvider()
	if sampler != nil {
		tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(tracetest.NewNoopExporter()),
			sdktrace.WithSampler(sdktrace.ParentBased(sampler)))
		tb.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
		opts.TracerProvider = tp
	}
	h, err := kannukiotel.NewHook(opts)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(h.Flush)
	return h
}

// noopHook is a Hook on OpenTelemetry's no-op providers: what the hook
// costs in a program that installed no SDK.
func noopHook(tb testing.TB) kannuki.Hook {
	h, err := kannukiotel.NewHook(kannukiotel.Options{TracerProvider: tracenoop.NewTracerProvider(), MeterProvider: noop.NewMeterProvider()})
	if err != nil {
		tb.Fatal(err)
	}
	return h
}

// TestEventPathAllocs: a hook that receives every event adds no allocation
// to a cycle, so the events themselves (built and delivered, or skipped
// with no hook) allocate nothing; and kannukiotel, which hands spans and
// histogram values to the SDK in flushes, adds none to the locking
// goroutine once its buffer has grown.
func TestEventPathAllocs(t *testing.T) {
	var sink int64
	reader := hooktest.Func(func(_ context.Context, e kannuki.Event) {
		sink += int64(e.Wait+e.Hold) + int64(len(e.Key)) + int64(e.Kind)
	})
	// An hour's FlushDelay: no flush runs while allocations are counted.
	batched := sdkHook(t, kannukiotel.Options{DBSystem: "postgresql", FlushDelay: time.Hour})
	batchedCycle := hooktest.MemCycle(t, batched, uniqueKey(t))
	for range 200 { // grow the buffer (400 records), then flush it for reuse
		batchedCycle()
	}
	batched.Flush()

	none := testing.AllocsPerRun(200, hooktest.MemCycle(t, nil, uniqueKey(t)))
	withReader := testing.AllocsPerRun(200, hooktest.MemCycle(t, reader, uniqueKey(t)))
	withBatched := testing.AllocsPerRun(200, batchedCycle)
	withUnbatched := testing.AllocsPerRun(200, hooktest.MemCycle(t, sdkHook(t, kannukiotel.Options{DBSystem: "postgresql", FlushDelay: -1}), uniqueKey(t)))
	t.Logf("allocations per WithLock cycle on kannukimem: no hook %v, event-reading hook %v, kannukiotel on the SDK %v (batched: the locking goroutine's), %v (FlushDelay < 0: the SDK's too)",
		none, withReader, withBatched, withUnbatched)
	if withReader != none {
		t.Errorf("delivering events costs %v allocations per cycle, want 0", withReader-none)
	}
	if withBatched != none {
		t.Errorf("kannukiotel costs the locking goroutine %v allocations per cycle, want 0", withBatched-none)
	}
	_ = sink
}

// BenchmarkEventPath compares a kannukimem cycle (the cheapest backend, so
// the hook's share is the largest it can be) without and with hooks. With
// batching, ns/op is the locking goroutine's time; the flushes run beside
// it.
func BenchmarkEventPath(b *testing.B) {
	for _, c := range []struct {
		name string
		hook func(testing.TB) kannuki.Hook
	}{
		{"nohook", func(testing.TB) kannuki.Hook { return nil }},
		{"otel-noop", noopHook},
		{"otel-sdk", func(tb testing.TB) kannuki.Hook { return sdkHook(tb, kannukiotel.Options{DBSystem: "postgresql"}) }},
		{"otel-sdk-holdspan", func(tb testing.TB) kannuki.Hook {
			return sdkHook(tb, kannukiotel.Options{DBSystem: "postgresql", SpanHold: true})
		}},
		{"otel-sdk-unbatched", func(tb testing.TB) kannuki.Hook {
			return sdkHook(tb, kannukiotel.Options{DBSystem: "postgresql", FlushDelay: -1})
		}},
	} {
		b.Run(c.name, func(b *testing.B) {
			cycle := hooktest.MemCycle(b, c.hook(b), uniqueKey(b))
			b.ReportAllocs()
			for b.Loop() {
				cycle()
			}
		})
	}
}

// BenchmarkEvents is the hook's own cost for the three events of an
// uncontended cycle (attempt, acquired, released):
//
//	otel-noop       no SDK installed
//	otel-sdk        the locking goroutine's share, flushes running beside it
//	otel-sdk-total  the same with every flush run in the loop: all the work
//	otel-unbatched  FlushDelay < 0: everything on the locking goroutine
func BenchmarkEvents(b *testing.B) {
	for _, c := range []struct {
		name    string
		hook    func(testing.TB) *kannukiotel.Hook
		flushes bool
	}{
		{"otel-noop", func(tb testing.TB) *kannukiotel.Hook { return noopHook(tb).(*kannukiotel.Hook) }, false},
		{"otel-sdk", func(tb testing.TB) *kannukiotel.Hook { return sdkHook(tb, kannukiotel.Options{DBSystem: "postgresql"}) }, false},
		{"otel-sdk-total", func(tb testing.TB) *kannukiotel.Hook {
			return sdkHook(tb, kannukiotel.Options{DBSystem: "postgresql", FlushDelay: time.Hour})
		}, true},
		{"otel-unbatched", func(tb testing.TB) *kannukiotel.Hook {
			return sdkHook(tb, kannukiotel.Options{DBSystem: "postgresql", FlushDelay: -1})
		}, false},
	} {
		b.Run(c.name, func(b *testing.B) {
			h, ctx := c.hook(b), context.Background()
			b.ReportAllocs()
			n := 0
			for b.Loop() {
				h.LockEvent(ctx, kannuki.Event{Kind: kannuki.EventAttempt, Key: "k"})
				h.LockEvent(ctx, kannuki.Event{Kind: kannuki.EventAcquired, Key: "k", Wait: 300 * time.Microsecond})
				h.LockEvent(ctx, kannuki.Event{Kind: kannuki.EventReleased, Key: "k", Hold: 2 * time.Millisecond})
				if n++; c.flushes && n%128 == 0 {
					h.Flush()
				}
			}
		})
	}
}

// BenchmarkCyclePostgres times the uncontended WithLock cycle on
// PostgreSQL (kannukipg over pgx/stdlib, one connection, default Locker
// options) under several configurations, interleaved in each iteration
// (see hooktest.InterleavedCycles); ratios are to the cycle without a
// hook:
//
//	emptyhook    a hook that does nothing: what the Locker spends on
//	             having a hook (events, the waiting watch)
//	noop         kannukiotel on the no-op providers (no SDK installed)
//	metrics      kannukiotel on the metrics SDK, no tracing
//	default      metrics and traces, every acquisition span recorded
//	             (the SDK's default sampler on calls outside any trace),
//	             batch span processor
//	allspans     default plus hold spans
//
// See examples/metrics for the cycle with kannukiprom as well.
func BenchmarkCyclePostgres(b *testing.B) {
	backend := hooktest.SingleConnBackend(b, "pgx")
	opts := kannukiotel.Options{DBSystem: "postgresql"}
	with := func(h kannuki.Hook) *kannuki.Locker { return kannuki.New(backend, kannuki.Options{Hook: h}) }
	all := opts
	all.SpanHold = true
	hooktest.InterleavedCycles(b,
		hooktest.Contender{Name: "nohook", Locker: with(nil)},
		hooktest.Contender{Name: "emptyhook", Locker: with(hooktest.Func(func(context.Context, kannuki.Event) {}))},
		hooktest.Contender{Name: "noop", Locker: with(noopHook(b))},
		hooktest.Contender{Name: "metrics", Locker: with(sampledHook(b, opts, nil))},
		hooktest.Contender{Name: "default", Locker: with(sdkHook(b, opts))},
		hooktest.Contender{Name: "allspans", Locker: with(sdkHook(b, all))},
	)
}

// BenchmarkCyclePostgresUnbatched is BenchmarkCyclePostgres's default
// configuration with FlushDelay < 0, each span and histogram value handed
// to the SDK on the locking goroutine, against the cycle without a hook.
// It runs apart because its wake-ups of the batch span processor's
// goroutine, one per span, slow every Locker of the process, hooked or
// not, which hides their cost in the ratios: on a two-core machine, with
// it among the others every median cycle was about 130 µs in ten runs of
// five, without it 25 to 50 µs in nine runs of ten.
func BenchmarkCyclePostgresUnbatched(b *testing.B) {
	backend := hooktest.SingleConnBackend(b, "pgx")
	with := func(h kannuki.Hook) *kannuki.Locker { return kannuki.New(backend, kannuki.Options{Hook: h}) }
	hooktest.InterleavedCycles(b,
		hooktest.Contender{Name: "nohook", Locker: with(nil)},
		hooktest.Contender{Name: "unbatched", Locker: with(sdkHook(b, kannukiotel.Options{DBSystem: "postgresql", FlushDelay: -1}))},
	)
}
