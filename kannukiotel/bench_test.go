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
func sdkHook(tb testing.TB, opts kannukiotel.Options) kannuki.Hook {
	tb.Helper()
	return sampledHook(tb, opts, sdktrace.AlwaysSample())
}

// sampledHook is sdkHook with the given root sampler; nil means no tracing
// (the no-op tracer), metrics only.
func sampledHook(tb testing.TB, opts kannukiotel.Options, sampler sdktrace.Sampler) kannuki.Hook {
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
// with no hook) allocate nothing.
func TestEventPathAllocs(t *testing.T) {
	var sink int64
	reader := kannuki.HookFunc(func(_ context.Context, e kannuki.Event) {
		sink += int64(e.Wait+e.Hold) + int64(len(e.Key)) + int64(e.Kind)
	})
	none := testing.AllocsPerRun(200, hooktest.MemCycle(t, nil, uniqueKey(t)))
	withReader := testing.AllocsPerRun(200, hooktest.MemCycle(t, reader, uniqueKey(t)))
	withNoop := testing.AllocsPerRun(200, hooktest.MemCycle(t, noopHook(t), uniqueKey(t)))
	withSDK := testing.AllocsPerRun(200, hooktest.MemCycle(t, sdkHook(t, kannukiotel.Options{DBSystem: "postgresql"}), uniqueKey(t)))
	t.Logf("allocations per WithLock cycle on kannukimem: no hook %v, event-reading hook %v, kannukiotel on no-op providers %v, kannukiotel on the SDK %v",
		none, withReader, withNoop, withSDK)
	if withReader != none {
		t.Errorf("delivering events costs %v allocations per cycle, want 0", withReader-none)
	}
	_ = sink
}

// BenchmarkEventPath compares a kannukimem cycle (the cheapest backend, so
// the hook's share is the largest it can be) without and with hooks.
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
// uncontended cycle (attempt, acquired, released).
func BenchmarkEvents(b *testing.B) {
	for _, c := range []struct {
		name string
		hook func(testing.TB) kannuki.Hook
	}{
		{"otel-noop", noopHook},
		{"otel-sdk", func(tb testing.TB) kannuki.Hook { return sdkHook(tb, kannukiotel.Options{DBSystem: "postgresql"}) }},
	} {
		b.Run(c.name, func(b *testing.B) {
			h, ctx := c.hook(b), context.Background()
			b.ReportAllocs()
			for b.Loop() {
				h.LockEvent(ctx, kannuki.Event{Kind: kannuki.EventAttempt, Key: "k"})
				h.LockEvent(ctx, kannuki.Event{Kind: kannuki.EventAcquired, Key: "k", Wait: 300 * time.Microsecond})
				h.LockEvent(ctx, kannuki.Event{Kind: kannuki.EventReleased, Key: "k", Hold: 2 * time.Millisecond})
			}
		})
	}
}

// BenchmarkCyclePostgres times the uncontended WithLock cycle on
// PostgreSQL (kannukipg over pgx/stdlib, default keepalive) with and
// without the hook on the SDK, alternating the two in each iteration so
// that the load of a shared machine falls on both alike. Metrics: ns per
// cycle of each, and their ratio.
//
// Sub-benchmarks: the hook on no-op providers (a program without an SDK),
// on the metrics SDK only, and with tracing too, sampling 1 in 10 root
// spans or all of them (the worst case).
func BenchmarkCyclePostgres(b *testing.B) {
	env := hooktest.NewEnv(b, "pgx")
	opts := kannukiotel.Options{DBSystem: "postgresql"}
	for _, c := range []struct {
		name string
		hook func(testing.TB) kannuki.Hook
	}{
		{"noop-providers", noopHook},
		{"metrics", func(tb testing.TB) kannuki.Hook { return sampledHook(tb, opts, nil) }},
		{"metrics+traces-1in10", func(tb testing.TB) kannuki.Hook {
			return sampledHook(tb, opts, sdktrace.TraceIDRatioBased(0.1))
		}},
		{"metrics+traces-all", func(tb testing.TB) kannuki.Hook { return sdkHook(tb, opts) }},
	} {
		b.Run(c.name, func(b *testing.B) {
			plain := kannuki.New(env.Backend, kannuki.Options{})
			hooked := kannuki.New(env.Backend, kannuki.Options{Hook: c.hook(b)})
			hooktest.PairedCycles(b, plain, hooked, uniqueKey(b), uniqueKey(b))
		})
	}
}
