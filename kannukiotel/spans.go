package kannukiotel

import (
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/kannuki-go/kannuki/internal/outcome"
)

// internal is the kind of both spans: the database calls of an acquisition
// are the driver's to report as client spans.
var internal = trace.WithSpanKind(trace.SpanKindInternal)

// acquireSpan records the acquisition of r. The events carry no span from
// the attempt to the outcome, so the span is made afterwards with the
// times the events gave: same start, end and parent as a span opened at
// the attempt, without correlating events on the locking goroutine.
func (h *Hook) acquireSpan(r *record, mi, oi int) {
	attrs := h.attrs.acquireStart[mi][oi]
	if h.keyAttr {
		attrs = trace.WithAttributes(append(clip(h.attrs.acquireSpan[mi][oi]), AttrKey.String(r.key))...)
	}
	start := r.start()
	_, span := h.tracer.Start(r.ctx, SpanAcquire, trace.WithTimestamp(start), internal, attrs)
	if span.IsRecording() {
		if r.waited > 0 {
			span.AddEvent(SpanEventWaiting, trace.WithTimestamp(start.Add(r.waited)))
		}
		if failed(oi) {
			h.setError(span, r, outcome.Names[oi])
		}
	}
	span.End(trace.WithTimestamp(r.end))
}

// holdSpan records the hold of r, made afterwards like acquireSpan.
func (h *Hook) holdSpan(r *record, mi, ei int) {
	attrs := h.attrs.holdStart[mi][ei]
	if h.keyAttr {
		attrs = trace.WithAttributes(append(clip(h.attrs.holdSpan[mi][ei]), AttrKey.String(r.key))...)
	}
	_, span := h.tracer.Start(r.ctx, SpanHold, trace.WithTimestamp(r.start()), internal, attrs)
	if ei != endReleased && span.IsRecording() {
		h.setError(span, r, ends[ei])
	}
	span.End(trace.WithTimestamp(r.end))
}

// setError marks span failed. The status says what kind of failure; the
// error's message joins it only with KeyAttribute, as Kannuki's and the
// drivers' messages may quote the key (r.err is kept only then).
func (h *Hook) setError(span trace.Span, r *record, kind string) {
	if r.err != nil {
		span.RecordError(r.err, trace.WithTimestamp(r.end))
		span.SetStatus(codes.Error, r.err.Error())
		return
	}
	span.SetStatus(codes.Error, kind)
}
