package kannukiotel

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/kannuki-go/kannuki"
	"github.com/kannuki-go/kannuki/internal/outcome"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/codes"
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

// Default histogram bucket boundaries, in seconds. Uncontended database
// locks are granted in well under a millisecond and contended ones can wait
// minutes, so the wait buckets start at 100 µs; holds are the length of
// the guarded work and reach an hour.
var (
	DefaultWaitBuckets = []float64{0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300}
	DefaultHoldBuckets = []float64{0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600}
)

// Options configure a Hook. The zero value reports to the global providers
// with no db.system.name, no key and no hold spans.
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
}

// Hook is a kannuki.Hook that records spans and metrics. Make it with
// NewHook; it is safe for concurrent use.
type Hook struct {
	tracer   trace.Tracer
	keyAttr  bool
	spanHold bool
	attrs    *attrTable

	// The histograms are recorded per event; everything else is counted
	// in counts and read by the SDK at collection (see counts.go).
	wait   metric.Float64Histogram
	hold   metric.Float64Histogram
	counts counts
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
	err := errors.Join(err1, err2, h.counts.register(m, h.attrs))
	if err != nil {
		return nil, fmt.Errorf("kannuki: kannukiotel instruments: %w", err)
	}
	return h, nil
}

// LockEvent implements kannuki.Hook.
func (h *Hook) LockEvent(ctx context.Context, e kannuki.Event) {
	mi := modeIndex(e.Mode)
	c := &h.counts
	switch e.Kind {
	case kannuki.EventAttempt:
		c.use(mi)
		c.waiting[mi].Add(1)
	case kannuki.EventAcquired, kannuki.EventNotAcquired:
		oi := outcome.Index(&e)
		c.use(mi)
		c.waiting[mi].Add(-1)
		if e.Kind == kannuki.EventAcquired {
			c.held[mi].Add(1)
		}
		c.acquisitions[mi][oi].Add(1)
		h.wait.Record(ctx, e.Wait.Seconds(), h.attrs.outRecord[mi][oi]...)
		h.acquireSpan(ctx, &e, mi, oi)
	case kannuki.EventReleased, kannuki.EventLost:
		c.use(mi)
		c.held[mi].Add(-1)
		if e.Kind == kannuki.EventLost {
			c.lost[mi].Add(1)
		}
		h.hold.Record(ctx, e.Hold.Seconds(), h.attrs.modeRecord[mi]...)
		if h.spanHold {
			h.holdSpan(ctx, &e, mi)
		}
	case kannuki.EventSkipped:
		c.skipped.Add(1)
	}
}

// internal is the kind of both spans: the database calls of an acquisition
// are the driver's to report as client spans.
var internal = trace.WithSpanKind(trace.SpanKindInternal)

// acquireSpan records the acquisition that just ended. The events carry no
// span from the attempt to the outcome, so the span is made now with its
// start set back by the time waited: same start, end and parent as a span
// opened at the attempt, without correlating events.
func (h *Hook) acquireSpan(ctx context.Context, e *kannuki.Event, mi, oi int) {
	end := time.Now()
	attrs := h.attrs.acquireStart[mi][oi]
	if h.keyAttr {
		attrs = trace.WithAttributes(append(clip(h.attrs.acquireSpan[mi][oi]), AttrKey.String(e.Key))...)
	}
	_, span := h.tracer.Start(ctx, SpanAcquire, trace.WithTimestamp(end.Add(-e.Wait)), internal, attrs)
	if failed(oi) {
		h.setError(span, e.Err, outcome.Names[oi], end)
	}
	span.End(trace.WithTimestamp(end))
}

// holdSpan records the hold that just ended, set back like acquireSpan.
func (h *Hook) holdSpan(ctx context.Context, e *kannuki.Event, mi int) {
	end := time.Now()
	ei := endIndex(e)
	attrs := h.attrs.holdStart[mi][ei]
	if h.keyAttr {
		attrs = trace.WithAttributes(append(clip(h.attrs.holdSpan[mi][ei]), AttrKey.String(e.Key))...)
	}
	_, span := h.tracer.Start(ctx, SpanHold, trace.WithTimestamp(end.Add(-e.Hold)), internal, attrs)
	if ei != endReleased {
		h.setError(span, e.Err, ends[ei], end)
	}
	span.End(trace.WithTimestamp(end))
}

// setError marks span failed. The status says what kind of failure; the
// error's message joins it only with KeyAttribute, as Kannuki's and the
// drivers' messages may quote the key.
func (h *Hook) setError(span trace.Span, err error, kind string, at time.Time) {
	if h.keyAttr && err != nil {
		span.RecordError(err, trace.WithTimestamp(at))
		span.SetStatus(codes.Error, err.Error())
		return
	}
	span.SetStatus(codes.Error, kind)
}
