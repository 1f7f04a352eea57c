package kannukiotel_test

import (
	"context"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/kannuki-go/kannuki"
	"github.com/kannuki-go/kannuki/internal/hooktest"
	"github.com/kannuki-go/kannuki/kannukimem"
	"github.com/kannuki-go/kannuki/kannukiotel"
	"go.opentelemetry.io/otel"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
)

// These tests need no database: they cover what PostgreSQL traffic in
// hook_test.go does not reach on purpose.

// TestSharedMode: shared acquisitions are told apart by kannuki.lock.mode.
func TestSharedMode(t *testing.T) {
	r := newRig(t, kannukiotel.Options{SpanHold: true})
	l := kannuki.New(kannukimem.New(), kannuki.Options{Hook: r.hook})
	if err := l.WithLock(context.Background(), uniqueKey(t), hooktest.Nothing, kannuki.Shared()); err != nil {
		t.Fatal(err)
	}
	m := r.collect(t)
	shared := kannukiotel.AttrMode.String("shared")
	if got := m.sum(t, "kannuki.lock.acquisitions", shared, kannukiotel.AttrOutcome.String("acquired")); got != 1 {
		t.Errorf("shared acquisitions = %d, want 1", got)
	}
	if n, _ := m.hist(t, "kannuki.lock.hold.duration", shared); n != 1 {
		t.Errorf("shared holds = %d, want 1", n)
	}
	for _, sp := range r.spans() {
		if attr(sp, kannukiotel.AttrMode) != "shared" {
			t.Errorf("span %s: mode %q", sp.Name, attr(sp, kannukiotel.AttrMode))
		}
	}
}

// TestSkippedAndUnknown: skipped jobs are counted without the key, and a
// Reason newer than this package is counted as "unknown", not dropped.
func TestSkippedAndUnknown(t *testing.T) {
	r := newRig(t, kannukiotel.Options{})
	ctx := context.Background()
	r.hook.LockEvent(ctx, kannuki.Event{Kind: kannuki.EventSkipped, Key: "job/42"})
	r.hook.LockEvent(ctx, kannuki.Event{Kind: kannuki.EventAttempt, Key: "job/42"})
	r.hook.LockEvent(ctx, kannuki.Event{Kind: kannuki.EventNotAcquired, Key: "job/42", Reason: 200})
	m := r.collect(t)
	if got := m.sum(t, "kannuki.job.skipped"); got != 1 {
		t.Errorf("skipped = %d, want 1", got)
	}
	if got := m.sum(t, "kannuki.lock.acquisitions", kannukiotel.AttrOutcome.String(kannukiotel.OutcomeUnknown)); got != 1 {
		t.Errorf("unknown outcomes = %d, want 1", got)
	}
	if got := m.sum(t, "kannuki.lock.waiting"); got != 0 {
		t.Errorf("waiting = %d, want 0", got)
	}
	noKeyInMetrics(t, m, "job/42")
}

// TestGlobalProviders: a Hook made before the application sets the global
// providers reports to them once they are set (otel's globals delegate).
// The globals can be handed over only once per process, so the check runs
// in a fresh process each time (and -count=N works).
func TestGlobalProviders(t *testing.T) {
	if os.Getenv(globalsChild) == "" {
		cmd := exec.Command(os.Args[0], "-test.run=^TestGlobalProviders$", "-test.count=1")
		cmd.Env = append(os.Environ(), globalsChild+"=1")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("the check in a fresh process failed: %v\n%s", err, out)
		}
		return
	}
	hook, err := kannukiotel.NewHook(kannukiotel.Options{})
	if err != nil {
		t.Fatal(err)
	}
	spans, reader := tracetest.NewInMemoryExporter(), sdkmetric.NewManualReader()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(spans))
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	otel.SetTracerProvider(tp)
	otel.SetMeterProvider(mp)
	t.Cleanup(func() {
		_ = tp.Shutdown(context.Background())
		_ = mp.Shutdown(context.Background())
	})

	l := kannuki.New(kannukimem.New(), kannuki.Options{Hook: hook})
	if err := l.WithLock(context.Background(), uniqueKey(t), hooktest.Nothing); err != nil {
		t.Fatal(err)
	}
	hook.Flush()
	if got := len(spans.GetSpans()); got != 1 {
		t.Errorf("%d spans on the global provider, want 1", got)
	}
	m := (&rig{reader: reader}).collect(t)
	if got := m.sum(t, "kannuki.lock.acquisitions"); got != 1 {
		t.Errorf("acquisitions on the global provider = %d, want 1", got)
	}
}

// globalsChild marks the process TestGlobalProviders starts.
const globalsChild = "KANNUKIOTEL_GLOBALS_CHILD"

// TestFlushDelay: with batching, spans and histogram values wait in the
// hook; a collection of the metrics hands them over first, so it sees
// every value recorded before it.
func TestFlushDelay(t *testing.T) {
	r := newRig(t, kannukiotel.Options{FlushDelay: time.Hour, SpanHold: true})
	l := kannuki.New(kannukimem.New(), kannuki.Options{Hook: r.hook})
	if err := l.WithLock(context.Background(), uniqueKey(t), hooktest.Nothing); err != nil {
		t.Fatal(err)
	}
	if n := len(r.exp.GetSpans()); n != 0 {
		t.Errorf("%d spans handed over before any flush, want 0", n)
	}
	m := r.collect(t)
	if n, _ := m.hist(t, "kannuki.lock.wait.duration"); n != 1 {
		t.Errorf("wait histogram has %d values after a collection, want 1", n)
	}
	if n, _ := m.hist(t, "kannuki.lock.hold.duration"); n != 1 {
		t.Errorf("hold histogram has %d values after a collection, want 1", n)
	}
	if n := len(r.exp.GetSpans()); n != 2 {
		t.Errorf("%d spans after a collection, want 2 (acquire, hold)", n)
	}
}

// TestUnbatched: with a negative FlushDelay each span is handed to the
// SDK as its event happens.
func TestUnbatched(t *testing.T) {
	r := newRig(t, kannukiotel.Options{FlushDelay: -1, SpanHold: true})
	l := kannuki.New(kannukimem.New(), kannuki.Options{Hook: r.hook})
	if err := l.WithLock(context.Background(), uniqueKey(t), hooktest.Nothing); err != nil {
		t.Fatal(err)
	}
	if n := len(r.exp.GetSpans()); n != 2 {
		t.Errorf("%d spans without a flush, want 2 (acquire, hold)", n)
	}
}
