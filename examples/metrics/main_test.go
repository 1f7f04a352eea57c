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
	"github.com/kannuki-go/kannuki/kannukipg"
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

// BenchmarkCyclePostgres times the uncontended WithLock cycle on
// PostgreSQL (kannukipg over pgx/stdlib) with both hooks (kannukiotel on a
// production-like SDK, kannukiprom) and without, alternating the two in
// each iteration so that the load of a shared machine falls on both alike.
// Metrics: ns per cycle of each, and their ratio.
func BenchmarkCyclePostgres(b *testing.B) {
	backend := kannukipg.New(hooktest.OpenDB(b, "pgx"), kannukipg.Options{})
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(tracetest.NewNoopExporter()))
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader()))
	b.Cleanup(func() {
		_ = tp.Shutdown(context.Background())
		_ = mp.Shutdown(context.Background())
	})
	otelHook, err := kannukiotel.NewHook(kannukiotel.Options{TracerProvider: tp, MeterProvider: mp, DBSystem: "postgresql"})
	if err != nil {
		b.Fatal(err)
	}
	// timed wraps both hooks to measure the time spent in them, in place:
	// a figure that the machine's load distorts less than a cycle's.
	hooks := kannuki.Hooks(otelHook, kannukiprom.New(kannukiprom.Options{}))
	var inHooks time.Duration
	timed := kannuki.HookFunc(func(ctx context.Context, e kannuki.Event) {
		start := time.Now()
		hooks.LockEvent(ctx, e)
		inHooks += time.Since(start) // one goroutine: no race
	})
	plain := kannuki.New(backend, kannuki.Options{})
	hooked := kannuki.New(backend, kannuki.Options{Hook: timed})

	cycles := hooktest.PairedCycles(b, plain, hooked, hooktest.Unique("kannuki-bench/metrics/plain"), hooktest.Unique("kannuki-bench/metrics/hooked"))
	b.ReportMetric(float64(inHooks.Nanoseconds())/float64(cycles), "ns-in-hooks/cycle")
}
