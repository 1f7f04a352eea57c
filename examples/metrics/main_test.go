package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kannuki-go/kannuki"
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

func openDB(tb testing.TB) *sql.DB {
	tb.Helper()
	db, err := sql.Open("pgx", testdb.PostgresDSN())
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { db.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := db.PingContext(ctx); err != nil {
		testdb.Unavailable(tb, "PostgreSQL", err)
	}
	return db
}

// unique returns s with a random suffix, so that concurrent runs of the
// tests never share keys.
func unique(s string) string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return s + "-" + hex.EncodeToString(b[:])
}

// TestRun runs the example briefly and checks that both hooks saw every
// call: the OpenTelemetry wait histogram, the Prometheus acquisitions and
// the number of calls the workers made agree, and nothing is left held.
func TestRun(t *testing.T) {
	openDB(t) // skip or fail early without PostgreSQL
	var out bytes.Buffer
	cfg := config{dsn: testdb.PostgresDSN(), prefix: unique("kannuki-test/examples-metrics"), workers: 4, keys: 1, duration: 300 * time.Millisecond, timeout: 20 * time.Millisecond}
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
	backend := kannukipg.New(openDB(b), kannukipg.Options{})
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

	ctx := context.Background()
	keyA, keyB := unique("kannuki-bench/metrics/plain"), unique("kannuki-bench/metrics/hooked")
	cycle := func(l *kannuki.Locker, key string) time.Duration {
		start := time.Now()
		if err := l.WithLock(ctx, key, func(context.Context) error { return nil }); err != nil {
			b.Fatal(err)
		}
		return time.Since(start)
	}
	var ta, tb []time.Duration
	for b.Loop() {
		if len(ta)%2 == 0 {
			ta = append(ta, cycle(plain, keyA))
			tb = append(tb, cycle(hooked, keyB))
		} else {
			tb = append(tb, cycle(hooked, keyB))
			ta = append(ta, cycle(plain, keyA))
		}
	}
	reportPaired(b, ta, tb)
	b.ReportMetric(float64(inHooks.Nanoseconds())/float64(len(tb)), "ns-in-hooks/cycle")
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
