package kannukiotel

import (
	"github.com/kannuki-go/kannuki"
	"github.com/kannuki-go/kannuki/internal/outcome"
	"github.com/kannuki-go/kannuki/store"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"
)

// Attribute keys. db.system.name and error.type are OpenTelemetry semantic
// conventions; the others are this package's own.
const (
	AttrDBSystem = attribute.Key("db.system.name")
	AttrMode     = attribute.Key("kannuki.lock.mode")
	AttrOutcome  = attribute.Key("kannuki.lock.outcome")
	AttrKey      = attribute.Key("kannuki.lock.key") // spans only, with Options.KeyAttribute
	AttrEnd      = attribute.Key("kannuki.lock.end") // hold spans: "released", "lost" or "release_failed"
	AttrErrType  = attribute.Key("error.type")
)

// Outcome values of AttrOutcome. Every reason of kannuki.Reason has one,
// so the set of values, and so of metric series, is fixed.
const (
	OutcomeAcquired         = outcome.Acquired
	OutcomeHeld             = outcome.Held
	OutcomeTimeout          = outcome.Timeout
	OutcomeCanceled         = outcome.Canceled
	OutcomeDeadlock         = outcome.Deadlock
	OutcomeError            = outcome.Error
	OutcomeRetriesExhausted = outcome.RetriesExhausted
	OutcomePoolExhausted    = outcome.PoolExhausted
	OutcomeCapacity         = outcome.Capacity
	OutcomeUnknown          = outcome.Unknown // a Reason newer than this package
)

// failed tells which outcomes (rows of outcome.Names) are errors of the
// acquire span. A single try that finds the lock held got a valid answer
// (TryLock returns false, nil), so it is not one; a timeout, a cancellation
// or a deadlock is.
func failed(oi int) bool { return oi > 1 }

// How a hold ended: the values of AttrEnd, indexed by endIndex.
var ends = [...]string{"released", "lost", "release_failed"}

const (
	endReleased = iota
	endLost
	endReleaseFailed
	numEnds
)

func endIndex(e *kannuki.Event) int {
	switch {
	case e.Kind == kannuki.EventLost:
		return endLost
	case e.Err != nil:
		return endReleaseFailed
	}
	return endReleased
}

// modes is indexed by modeIndex.
var modes = [...]store.Mode{store.ModeExclusive, store.ModeShared}

const numModes = len(modes)

func modeIndex(m store.Mode) int {
	if m == store.ModeShared {
		return 1
	}
	return 0
}

// attrTable holds every attribute list the hook uses, built once, so that
// an event costs no attribute allocation or sorting: the metric options are
// ready-made slices passed with "...", which the API does not copy.
type attrTable struct {
	// by mode: metrics without outcome (held, waiting, hold, lost)
	modeRecord  [numModes][]metric.RecordOption
	modeObserve [numModes][]metric.ObserveOption
	// by mode and outcome: acquisitions and wait
	outRecord  [numModes][outcome.N][]metric.RecordOption
	outObserve [numModes][outcome.N][]metric.ObserveOption
	// span attributes by mode and outcome (acquire spans) and by mode and
	// end (hold spans), as lists and as ready start options
	acquireSpan  [numModes][outcome.N][]attribute.KeyValue
	holdSpan     [numModes][numEnds][]attribute.KeyValue
	acquireStart [numModes][outcome.N]trace.SpanStartOption
	holdStart    [numModes][numEnds]trace.SpanStartOption
	// no attributes beyond db.system.name: jobs skipped
	plainObserve []metric.ObserveOption
}

func newAttrTable(dbSystem string) *attrTable {
	t := &attrTable{}
	var base []attribute.KeyValue
	if dbSystem != "" {
		base = append(base, AttrDBSystem.String(dbSystem))
	}
	t.plainObserve = []metric.ObserveOption{metric.WithAttributeSet(attribute.NewSet(base...))}
	for mi, m := range modes {
		withMode := append(clip(base), AttrMode.String(m.String()))
		set := metric.WithAttributeSet(attribute.NewSet(withMode...))
		t.modeRecord[mi] = []metric.RecordOption{set}
		t.modeObserve[mi] = []metric.ObserveOption{set}
		for ei, end := range ends {
			attrs := append(clip(withMode), AttrEnd.String(end))
			if ei != endReleased {
				attrs = append(attrs, AttrErrType.String(end))
			}
			t.holdSpan[mi][ei] = attrs
			t.holdStart[mi][ei] = trace.WithAttributes(attrs...)
		}
		for oi, o := range outcome.Names {
			withOut := append(clip(withMode), AttrOutcome.String(o))
			set := metric.WithAttributeSet(attribute.NewSet(withOut...))
			t.outRecord[mi][oi] = []metric.RecordOption{set}
			t.outObserve[mi][oi] = []metric.ObserveOption{set}
			if failed(oi) {
				withOut = append(withOut, AttrErrType.String(o))
			}
			t.acquireSpan[mi][oi] = withOut
			t.acquireStart[mi][oi] = trace.WithAttributes(withOut...)
		}
	}
	return t
}

// clip returns s with no spare capacity, so appending to it copies.
func clip(s []attribute.KeyValue) []attribute.KeyValue { return s[:len(s):len(s)] }
