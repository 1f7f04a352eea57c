package kannukiotel

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/kannuki-go/kannuki"
	"github.com/kannuki-go/kannuki/internal/outcome"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"
)

// ScopeName is the instrumentation scope of the hook's tracer and meter:
// this package's import path.
const ScopeName = "github.com/kannuki-go/kannuki/kannukiotel"

// Span names.
const (
	SpanAcquire = "kannuki.acquire"
	SpanHold    = "kannuki.hold"
)

// SpanEventWaiting is the event of an acquire span that marks when the
// call found the lock held and began to wait (kannuki.EventWaiting).
const SpanEventWaiting = "kannuki.waiting"

// DefaultFlushDelay is the longest the Hook keeps a finished acquisition
// or hold before handing its span and histogram value to the SDK (see
// Options.FlushDelay).
const DefaultFlushDelay = 100 * time.Millisecond

// Default histogram bucket boundaries, in seconds. Uncontended database
// locks are granted in well under a millisecond and contended ones can wait
// minutes, so the wait buckets start at 100 µs; holds are the length of
// the guarded work and reach an hour.
var (
	DefaultWaitBuckets = []float64{0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300}
	DefaultHoldBuckets = []float64{0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600}
)

// Options configure a Hook. The zero value reports to the global providers
// with no db.system.name, no key and no hold spans, handing spans and
// histogram values over in batches (see FlushDelay).
type Options struct {
	// TracerProvider makes the tracer. nil means otel.GetTracerProvider().
	TracerProvider trace.TracerProvider
	// MeterProvider makes the meter. nil means otel.GetMeterProvider().
	MeterProvider metric.MeterProvider
	// DBSystem is the db.system.name attribute of spans and metrics, as the
	// OpenTelemetry conventions name the database: "postgresql", "mysql",
	// "mariadb". Empty leaves the attribute out.
	DBSystem string
	// KeyAttribute puts the lock key (kannuki.lock.key) and error messages,
	// which may contain it, on spans. Off by default because keys can carry
	// personal or business data. Keys are never metric attributes.
	KeyAttribute bool
	// SpanHold records a "kannuki.hold" span for the time each lock was held.
	SpanHold bool
	// WaitBuckets and HoldBuckets are the histograms' bucket boundaries in
	// seconds. nil means DefaultWaitBuckets and DefaultHoldBuckets (a View
	// in the SDK can still override them).
	WaitBuckets, HoldBuckets []float64
	// FlushDelay is the longest the Hook keeps a finished acquisition or
	// hold before it hands the span and the histogram value to the SDK,
	// from a timer's goroutine, many at a time; a collection of the
	// metrics and Flush hand over everything pending first. Made one by
	// one on the locking goroutine, a span costs that goroutine a good
	// part of an uncontended database lock (see "Cost" in the package
	// documentation). Spans keep their true start and end times and their
	// parent. 0 means DefaultFlushDelay; negative hands each over as its
	// event happens, on the locking goroutine.
	FlushDelay time.Duration
}

// Hook is a kannuki.Hook that records spans and metrics. Make it with
// NewHook; it is safe for concurrent use. Call Flush before shutting the
// TracerProvider down, or the spans of the last FlushDelay are lost.
type Hook struct {
	tracer   trace.Tracer
	keyAttr  bool
	spanHold bool
	attrs    *attrTable

	// The histograms and spans are made from records, at once or in
	// batches (see pending.go); everything else is counted in counts and
	// read by the SDK at collection (see counts.go).
	wait    metric.Float64Histogram
	hold    metric.Float64Histogram
	counts  counts
	pending pending
}

var _ kannuki.Hook = (*Hook)(nil)

// NewHook makes a Hook. It fails only if the meter refuses an instrument.
// The instruments live as long as the MeterProvider, like the Hook.
func NewHook(opts Options) (*Hook, error) {
	tp, mp := opts.TracerProvider, opts.MeterProvider
	if tp == nil {
		tp = otel.GetTracerProvider()
	}
	if mp == nil {
		mp = otel.GetMeterProvider()
	}
	waitBuckets, holdBuckets := opts.WaitBuckets, opts.HoldBuckets
	if waitBuckets == nil {
		waitBuckets = DefaultWaitBuckets
	}
	if holdBuckets == nil {
		holdBuckets = DefaultHoldBuckets
	}
	h := &Hook{
		tracer:   tp.Tracer(ScopeName),
		keyAttr:  opts.KeyAttribute,
		spanHold: opts.SpanHold,
		attrs:    newAttrTable(opts.DBSystem),
	}
	m := mp.Meter(ScopeName)
	var err1, err2 error
	h.wait, err1 = m.Float64Histogram("kannuki.lock.wait.duration",
		metric.WithUnit("s"), metric.WithExplicitBucketBoundaries(waitBuckets...),
		metric.WithDescription("Time spent acquiring a lock, granted or not."))
	h.hold, err2 = m.Float64Histogram("kannuki.lock.hold.duration",
		metric.WithUnit("s"), metric.WithExplicitBucketBoundaries(holdBuckets...),
		metric.WithDescription("Time a lock was held, until released or lost."))
	// The collection callback flushes first, so that a collection sees
	// every histogram value recorded before it began.
	err := errors.Join(err1, err2, h.counts.register(m, h.attrs, h.Flush))
	if err != nil {
		return nil, fmt.Errorf("kannuki: kannukiotel instruments: %w", err)
	}
	delay := opts.FlushDelay
	if delay == 0 {
		delay = DefaultFlushDelay
	}
	h.pending.init(delay, h.Flush)
	return h, nil
}

// LockEvent implements kannuki.Hook. It counts the event and, for an
// outcome, a release or a loss, keeps a record for the histogram and the
// span; it allocates nothing.
func (h *Hook) LockEvent(ctx context.Context, e kannuki.Event) {
	mi := modeIndex(e.Mode)
	c := &h.counts
	switch e.Kind {
	case kannuki.EventAttempt:
		c.use(mi)
		c.waiting[mi].Add(1)
	case kannuki.EventWaiting:
		c.use(mi)
		c.contended[mi].Add(1)
	case kannuki.EventAcquired, kannuki.EventNotAcquired:
		oi := outcome.Index(&e)
		c.use(mi)
		c.waiting[mi].Add(-1)
		if e.Kind == kannuki.EventAcquired {
			c.held[mi].Add(1)
		}
		c.acquisitions[mi][oi].Add(1)
		r := record{ctx: ctx, end: time.Now(), d: e.Wait, mode: uint8(mi), index: uint8(oi), waited: e.WaitBegan}
		if h.keyAttr {
			r.key = e.Key
			if failed(oi) {
				r.err = e.Err
			}
		}
		h.keep(&r)
	case kannuki.EventReleased, kannuki.EventLost:
		c.use(mi)
		c.held[mi].Add(-1)
		if e.Kind == kannuki.EventLost {
			c.lost[mi].Add(1)
		}
		ei := endIndex(&e)
		r := record{ctx: ctx, end: time.Now(), d: e.Hold, hold: true, mode: uint8(mi), index: uint8(ei)}
		if h.keyAttr && h.spanHold {
			r.key = e.Key
			if ei != endReleased {
				r.err = e.Err
			}
		}
		h.keep(&r)
	case kannuki.EventSkipped:
		c.skipped.Add(1)
	}
}

// Flush hands every pending span and histogram value to the SDK. Call it
// before shutting the TracerProvider down (a collection of the metrics
// flushes on its own), and in tests before reading what was exported.
func (h *Hook) Flush() {
	if h.pending.delay <= 0 {
		return
	}
	h.pending.flushing.Lock()
	defer h.pending.flushing.Unlock()
	batch := h.pending.take()
	for i := range batch {
		h.handOver(&batch[i])
	}
	h.pending.giveBack(batch)
}

// keep keeps r for a flush or, if it cannot be kept, hands it over now.
func (h *Hook) keep(r *record) {
	if !h.pending.add(r) {
		h.handOver(r)
	}
}

// handOver records r's histogram value and span: in a flush, or on the
// locking goroutine (see keep).
func (h *Hook) handOver(r *record) {
	mi, xi := int(r.mode), int(r.index)
	if r.hold {
		h.hold.Record(r.ctx, r.d.Seconds(), h.attrs.modeRecord[mi]...)
		if h.spanHold {
			h.holdSpan(r, mi, xi)
		}
		return
	}
	h.wait.Record(r.ctx, r.d.Seconds(), h.attrs.outRecord[mi][xi]...)
	h.acquireSpan(r, mi, xi)
}
