package kannukiotel

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kannuki-go/kannuki"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
)

// These tests see the batching bounds, maxBatch and maxPending.

// gate is a span processor whose first OnEnd blocks until released, as a
// stuck exporter would block a flush; it counts the spans ended.
type gate struct {
	blocked, release chan struct{}
	once             sync.Once
	ended            atomic.Int64
}

func (g *gate) OnStart(context.Context, sdktrace.ReadWriteSpan) {}
func (g *gate) Shutdown(context.Context) error                  { return nil }
func (g *gate) ForceFlush(context.Context) error                { return nil }

func (g *gate) OnEnd(sdktrace.ReadOnlySpan) {
	first := false
	g.once.Do(func() { first = true })
	if first {
		close(g.blocked)
		<-g.release
	}
	g.ended.Add(1)
}

func testHook(t *testing.T, sp sdktrace.SpanProcessor, delay time.Duration) *Hook {
	t.Helper()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(sp))
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader()))
	t.Cleanup(func() {
		_ = tp.Shutdown(context.Background())
		_ = mp.Shutdown(context.Background())
	})
	h, err := NewHook(Options{TracerProvider: tp, MeterProvider: mp, FlushDelay: delay})
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func acquisitions(h *Hook, n int) {
	for range n {
		h.LockEvent(context.Background(), kannuki.Event{Kind: kannuki.EventAttempt, Key: "k"})
		h.LockEvent(context.Background(), kannuki.Event{Kind: kannuki.EventAcquired, Key: "k", Wait: time.Microsecond})
	}
}

// TestFlushEarly: maxBatch pending records start a flush long before the
// FlushDelay, with no Flush call.
func TestFlushEarly(t *testing.T) {
	exp := tracetest.NewInMemoryExporter()
	h := testHook(t, sdktrace.NewSimpleSpanProcessor(exp), time.Hour)
	acquisitions(h, maxBatch-1)
	if n := len(exp.GetSpans()); n != 0 {
		t.Fatalf("%d spans handed over before a flush, want 0", n)
	}
	acquisitions(h, 1)
	deadline := time.Now().Add(10 * time.Second)
	for len(exp.GetSpans()) < maxBatch {
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d spans handed over after 10s", len(exp.GetSpans()), maxBatch)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestFlushBackpressure: while a flush is stuck in the SDK, records pile
// up to maxPending and no further: the next one is handed over on the
// locking goroutine. Nothing is lost once the SDK moves again.
func TestFlushBackpressure(t *testing.T) {
	g := &gate{blocked: make(chan struct{}), release: make(chan struct{})}
	h := testHook(t, g, time.Hour)
	acquisitions(h, maxBatch) // starts a flush, which blocks on its first span
	select {
	case <-g.blocked:
	case <-time.After(10 * time.Second):
		t.Fatal("no flush after maxBatch records")
	}
	acquisitions(h, maxPending)
	if n := g.ended.Load(); n != 0 {
		t.Fatalf("%d spans ended while the flush is stuck and records fit, want 0", n)
	}
	acquisitions(h, 1)
	if n := g.ended.Load(); n != 1 {
		t.Fatalf("%d spans ended after one record too many, want 1 (handed over at once)", n)
	}
	close(g.release)
	h.Flush()
	if n, want := g.ended.Load(), int64(maxBatch+maxPending+1); n != want {
		t.Errorf("%d spans ended after Flush, want %d", n, want)
	}
}
