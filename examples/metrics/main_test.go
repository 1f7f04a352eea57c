package main

import (
	"bytes"
	"context"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kannuki-go/kannuki"
	"github.com/kannuki-go/kannuki/internal/hooktest"
	"github.com/kannuki-go/kannuki/internal/testdb"
	"github.com/kannuki-go/kannuki/kannukiotel"
	"github.com/kannuki-go/kannuki/kannukiprom"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestRun runs the example briefly and checks that both hooks saw every
// call: the OpenTelemetry wait histogram, the Prometheus acquisitions and
// the number of calls the workers made agree, and nothing is left held.
func TestRun(t *testing.T) {
	hooktest.OpenDB(t, "pgx") // skip or fail early without PostgreSQL
	var out bytes.Buffer
	cfg := config{dsn: testdb.PostgresDSN(), prefix: hooktest.Unique("kannuki-test/examples-metrics"), workers: 4, keys: 1, duration: 300 * time.Millisecond, timeout: 20 * time.Millisecond}
	if err := run(context.Background(), cfg, &out); err != nil {
		t.Fatal(err)
	}
	text := out.String()
	number := func(re string) int {
		t.Helper()
		m := regexp.MustCompile(re).FindStringSubmatch(text)
		if m == nil {
			t.Fatalf("no %q in the output:\n%s", re, text)
		}
		n, _ := strconv.Atoi(m[1])
		return n
	}
	calls := number(`(\d+) calls`)
	otelWaits := number(`kannuki\.lock\.wait\.duration\s+count\s+(\d+)`)
	promCalls := 0
	for _, m := range regexp.MustCompile(`kannuki_lock_acquisitions_total\{[^}]*\} (\d+)`).FindAllStringSubmatch(text, -1) {
		n, _ := strconv.Atoi(m[1])
		promCalls += n
	}
	if calls == 0 || otelWaits != calls || promCalls != calls {
		t.Errorf("calls %d, OpenTelemetry waits %d, Prometheus acquisitions %d: want equal and > 0", calls, otelWaits, promCalls)
	}
	for _, gauge := range []string{`kannuki_locks_held{backend="postgresql"} 0`, `kannuki_lock_waiters{backend="postgresql"} 0`} {
		if !strings.Contains(text, gauge) {
			t.Errorf("output lacks %s", gauge)
		}
	}
	if strings.Contains(text, "orders/") {
		t.Error("a lock key appears in the output")
	}
}

// BenchmarkCyclePostgres times the uncontended lock cycle (Locker.WithLock
// with an empty fn, default Locker options) on PostgreSQL (kannukipg over
// pgx/stdlib, all Lockers on one connection) under these configurations,
// interleaved in each iteration so that the load of a shared machine
// falls on all alike (see hooktest.InterleavedCycles):
//
//	nohook      the baseline: no hook
//	emptyhook   a hook that does nothing: what the Locker spends on having
//	            a hook at all
//	default     kannukiotel's defaults (an acquisition span per call, on an
//	            SDK tracer provider with the default sampler, so every call
//	            outside a trace is recorded, and a batch span processor;
//	            an SDK meter provider) plus kannukiprom
//	allspans    default plus hold spans
//
// It reports the median ns per cycle of each (and the mean) and each
// median's ratio to nohook's. The spans go to an exporter that drops them
// and the metrics to a reader nobody collects: the hooks' cost, not an
// exporter's. kannukiotel's BenchmarkCyclePostgresUnbatched shows the
// cost of handing spans over one at a time (FlushDelay < 0), in a run of
// its own: its wake-ups of the span processor's goroutine slow every
// Locker of the process, hooked or not, which would hide the cost in the
// ratios here.
func BenchmarkCyclePostgres(b *testing.B) {
	backend := hooktest.SingleConnBackend(b, "pgx")
	hooks := func(opts kannukiotel.Options) kannuki.Hook {
		tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(tracetest.NewNoopExporter()))
		mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader()))
		opts.TracerProvider, opts.MeterProvider, opts.DBSystem = tp, mp, "postgresql"
		otelHook, err := kannukiotel.NewHook(opts)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() {
			otelHook.Flush()
			_ = tp.Shutdown(context.Background())
			_ = mp.Shutdown(context.Background())
		})
		return kannuki.Hooks(otelHook, kannukiprom.New(kannukiprom.Options{}))
	}
	with := func(h kannuki.Hook) *kannuki.Locker { return kannuki.New(backend, kannuki.Options{Hook: h}) }
	hooktest.InterleavedCycles(b,
		hooktest.Contender{Name: "nohook", Locker: with(nil)},
		hooktest.Contender{Name: "emptyhook", Locker: with(hooktest.Func(func(context.Context, kannuki.Event) {}))},
		hooktest.Contender{Name: "default", Locker: with(hooks(kannukiotel.Options{}))},
		hooktest.Contender{Name: "allspans", Locker: with(hooks(kannukiotel.Options{SpanHold: true}))},
	)
}
