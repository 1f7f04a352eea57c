// Package kannukiprom exposes Kannuki lock events as Prometheus metrics.
//
// A Collector is both a kannuki.Hook, which counts the events, and a
// prometheus.Collector, which the program registers where it likes:
//
//	c := kannukiprom.New(kannukiprom.Options{ConstLabels: prometheus.Labels{"backend": "postgresql"}})
//	prometheus.MustRegister(c)
//	l := kannuki.New(backend, kannuki.Options{Hook: c})
//
// Metrics:
//
//	kannuki_lock_wait_seconds{mode,outcome}      histogram: time to acquire, granted or not
//	kannuki_lock_hold_seconds{mode}              histogram: time held, until released or lost
//	kannuki_lock_acquisitions_total{mode,outcome} counter: finished acquisitions
//	kannuki_locks_held                           gauge: locks held now by this process
//	kannuki_lock_waiters                         gauge: calls acquiring now (trying or waiting)
//	kannuki_lock_lost_total                      counter: locks lost while held
//	kannuki_lock_contended_total{mode}           counter: acquisitions that found the lock held and waited
//	kannuki_jobs_skipped_total                   counter: jobs skipped as duplicates
//
// mode is "exclusive" or "shared"; outcome is "acquired" or why not:
// "held", "timeout", "canceled", "deadlock", "error", "retries_exhausted",
// "pool_exhausted"
// ("unknown" for a reason newer than this package).
// Labelled series appear when first used. Lock keys are never labels: they
// are unbounded and would explode the number of series.
//
// kannuki_lock_contended_total counts kannuki.EventWaiting. The memory and
// file backends and a Locker's local queue report a wait as it begins; the
// database backends wait inside one statement, so there it counts the
// attempts still unanswered after kannuki.Options.WaitingAfter, which a
// slow grant can be too.
package kannukiprom

import (
	"context"
	"sync"

	"github.com/kannuki-go/kannuki"
	"github.com/kannuki-go/kannuki/internal/outcome"
	"github.com/prometheus/client_golang/prometheus"
)

// Default histogram buckets, in seconds. Uncontended database locks are
// granted in well under a millisecond and contended ones can wait minutes,
// so the wait buckets start at 100 µs; holds are the length of the guarded
// work and reach an hour.
var (
	DefaultWaitBuckets = []float64{0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300}
	DefaultHoldBuckets = []float64{0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600}
)

// Options configure a Collector. The zero value is ready to use.
type Options struct {
	// ConstLabels are added to every metric, for example
	// {"backend": "postgresql"} or {"locker": "billing"} when a program
	// registers several Collectors. Never put a lock key here.
	ConstLabels prometheus.Labels
	// WaitBuckets and HoldBuckets are the histograms' upper bounds in
	// seconds. nil means DefaultWaitBuckets and DefaultHoldBuckets.
	WaitBuckets, HoldBuckets []float64
}

// Collector counts lock events (kannuki.Hook) and exposes them
// (prometheus.Collector). Make it with New; it is safe for concurrent use.
type Collector struct {
	wait         *prometheus.HistogramVec
	hold         *prometheus.HistogramVec
	acquisitions *prometheus.CounterVec
	held         prometheus.Gauge
	waiters      prometheus.Gauge
	lost         prometheus.Counter
	skipped      prometheus.Counter
	contended    *prometheus.CounterVec

	// The labelled children, resolved on first use and then reused, so an
	// event costs no label hashing or map lookup.
	waitObs [numModes][outcome.N]lazy[prometheus.Observer]
	holdObs [numModes]lazy[prometheus.Observer]
	acqCtr  [numModes][outcome.N]lazy[prometheus.Counter]
	contCtr [numModes]lazy[prometheus.Counter]
}

var (
	_ kannuki.Hook         = (*Collector)(nil)
	_ prometheus.Collector = (*Collector)(nil)
)

// New makes a Collector. Register it (prometheus.MustRegister(c) or on a
// registry of your own) and set it as the Locker's Hook, alone or with
// others through kannuki.Hooks.
func New(opts Options) *Collector {
	waitBuckets, holdBuckets := opts.WaitBuckets, opts.HoldBuckets
	if waitBuckets == nil {
		waitBuckets = DefaultWaitBuckets
	}
	if holdBuckets == nil {
		holdBuckets = DefaultHoldBuckets
	}
	cl := opts.ConstLabels
	return &Collector{
		wait: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "kannuki_lock_wait_seconds", ConstLabels: cl, Buckets: waitBuckets,
			Help: "Time spent acquiring a lock, granted or not, by mode and outcome.",
		}, []string{"mode", "outcome"}),
		hold: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "kannuki_lock_hold_seconds", ConstLabels: cl, Buckets: holdBuckets,
			Help: "Time a lock was held, until released or lost, by mode.",
		}, []string{"mode"}),
		acquisitions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kannuki_lock_acquisitions_total", ConstLabels: cl,
			Help: "Finished lock acquisitions by mode and outcome (acquired, or why not).",
		}, []string{"mode", "outcome"}),
		held: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "kannuki_locks_held", ConstLabels: cl,
			Help: "Locks held now by this process.",
		}),
		waiters: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "kannuki_lock_waiters", ConstLabels: cl,
			Help: "Calls acquiring a lock now (trying or waiting).",
		}),
		lost: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "kannuki_lock_lost_total", ConstLabels: cl,
			Help: "Locks lost while held (connection killed, database restarted).",
		}),
		skipped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "kannuki_jobs_skipped_total", ConstLabels: cl,
			Help: "Jobs skipped as duplicates because their lock was held.",
		}),
		contended: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kannuki_lock_contended_total", ConstLabels: cl,
			Help: "Lock acquisitions that found the lock held and waited for it, by mode.",
		}, []string{"mode"}),
	}
}

// Describe implements prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	c.wait.Describe(ch)
	c.hold.Describe(ch)
	c.acquisitions.Describe(ch)
	c.held.Describe(ch)
	c.waiters.Describe(ch)
	c.lost.Describe(ch)
	c.skipped.Describe(ch)
	c.contended.Describe(ch)
}

// Collect implements prometheus.Collector.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	c.wait.Collect(ch)
	c.hold.Collect(ch)
	c.acquisitions.Collect(ch)
	c.held.Collect(ch)
	c.waiters.Collect(ch)
	c.lost.Collect(ch)
	c.skipped.Collect(ch)
	c.contended.Collect(ch)
}

// LockEvent implements kannuki.Hook.
func (c *Collector) LockEvent(_ context.Context, e kannuki.Event) {
	mi := modeIndex(e.Mode)
	switch e.Kind {
	case kannuki.EventAttempt:
		c.waiters.Inc()
	case kannuki.EventWaiting:
		// The call stays counted in waiters, which it joined at its
		// attempt; this only counts that it had to wait.
		c.contCtr[mi].get(c.contended, mi, -1).Inc()
	case kannuki.EventAcquired, kannuki.EventNotAcquired:
		oi := outcome.Index(&e)
		c.waiters.Dec()
		if e.Kind == kannuki.EventAcquired {
			c.held.Inc()
		}
		c.acqCtr[mi][oi].get(c.acquisitions, mi, oi).Inc()
		c.waitObs[mi][oi].get(c.wait, mi, oi).Observe(e.Wait.Seconds())
	case kannuki.EventReleased, kannuki.EventLost:
		c.held.Dec()
		c.holdObs[mi].get(c.hold, mi, -1).Observe(e.Hold.Seconds())
		if e.Kind == kannuki.EventLost {
			c.lost.Inc()
		}
	case kannuki.EventSkipped:
		c.skipped.Inc()
	}
}

// vec is what lazy needs of a HistogramVec or CounterVec.
type vec[T any] interface {
	WithLabelValues(lvs ...string) T
}

// lazy is a child metric resolved once from its vector.
type lazy[T any] struct {
	once sync.Once
	m    T
}

// get returns the child for mode mi and outcome oi (oi < 0: no outcome label).
func (l *lazy[T]) get(v vec[T], mi, oi int) T {
	l.once.Do(func() {
		if oi < 0 {
			l.m = v.WithLabelValues(modes[mi])
		} else {
			l.m = v.WithLabelValues(modes[mi], outcome.Names[oi])
		}
	})
	return l.m
}
