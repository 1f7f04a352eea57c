package kannukiotel

import (
	"context"
	"errors"
	"sync/atomic"

	"go.opentelemetry.io/otel/metric"

	"github.com/kannuki-go/kannuki/internal/outcome"
)

// counts holds the counters and up-down counters of a Hook as atomics.
// An event adds to them without calling the SDK, and the SDK reads them at
// each collection through asynchronous instruments: the same data points
// as synchronous ones (cumulative values, converted to deltas by the SDK
// where the exporter wants them), at a fraction of the cost per event.
// Only the histograms, which an asynchronous instrument cannot express,
// are recorded per value, from the records of pending.go; the callback
// flushes those first, so a collection sees every value recorded before it.
type counts struct {
	acquisitions [numModes][outcome.N]atomic.Int64
	held         [numModes]atomic.Int64
	waiting      [numModes]atomic.Int64
	lost         [numModes]atomic.Int64
	contended    [numModes]atomic.Int64
	skipped      atomic.Int64
	// used marks the modes seen, so that an unused mode has no series.
	used [numModes]atomic.Bool
}

func (c *counts) use(mi int) {
	if !c.used[mi].Load() {
		c.used[mi].Store(true)
	}
}

// register makes the instruments and the callback that reports c; the
// callback calls before first.
func (c *counts) register(m metric.Meter, attrs *attrTable, before func()) error {
	acquisitions, err1 := m.Int64ObservableCounter("kannuki.lock.acquisitions",
		metric.WithUnit("{acquisition}"),
		metric.WithDescription("Finished acquisitions by outcome: acquired or why not."))
	held, err2 := m.Int64ObservableUpDownCounter("kannuki.lock.held",
		metric.WithUnit("{lock}"),
		metric.WithDescription("Locks held now by this process."))
	waiting, err3 := m.Int64ObservableUpDownCounter("kannuki.lock.waiting",
		metric.WithUnit("{call}"),
		metric.WithDescription("Calls acquiring a lock now (trying or waiting)."))
	lost, err4 := m.Int64ObservableCounter("kannuki.lock.lost",
		metric.WithUnit("{lock}"),
		metric.WithDescription("Locks lost while held (connection killed, database restarted)."))
	skipped, err5 := m.Int64ObservableCounter("kannuki.job.skipped",
		metric.WithUnit("{job}"),
		metric.WithDescription("Jobs skipped as duplicates because their lock was held."))
	contended, err6 := m.Int64ObservableCounter("kannuki.lock.contended",
		metric.WithUnit("{acquisition}"),
		metric.WithDescription("Acquisitions that found the lock held and waited for it."))
	if err := errors.Join(err1, err2, err3, err4, err5, err6); err != nil {
		return err
	}
	_, err := m.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		before()
		for mi := range numModes {
			if !c.used[mi].Load() {
				continue
			}
			o.ObserveInt64(held, c.held[mi].Load(), attrs.modeObserve[mi]...)
			o.ObserveInt64(waiting, c.waiting[mi].Load(), attrs.modeObserve[mi]...)
			if n := c.lost[mi].Load(); n > 0 {
				o.ObserveInt64(lost, n, attrs.modeObserve[mi]...)
			}
			if n := c.contended[mi].Load(); n > 0 {
				o.ObserveInt64(contended, n, attrs.modeObserve[mi]...)
			}
			for oi := range outcome.N {
				if n := c.acquisitions[mi][oi].Load(); n > 0 {
					o.ObserveInt64(acquisitions, n, attrs.outObserve[mi][oi]...)
				}
			}
		}
		if n := c.skipped.Load(); n > 0 {
			o.ObserveInt64(skipped, n, attrs.plainObserve...)
		}
		return nil
	}, acquisitions, held, waiting, lost, contended, skipped)
	return err
}
