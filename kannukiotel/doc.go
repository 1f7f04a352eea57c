// Package kannukiotel reports Kannuki lock events to OpenTelemetry: a span
// for each acquisition (and, if asked, one for each hold) and metrics for
// wait and hold times, outcomes, contention, and locks held and awaited.
//
//	hook, err := kannukiotel.NewHook(kannukiotel.Options{DBSystem: "postgresql"})
//	if err != nil { ... }
//	defer hook.Flush() // before the providers shut down
//	l := kannuki.New(backend, kannuki.Options{Hook: hook})
//
// With no providers in Options the OpenTelemetry globals are used, so the
// hook costs next to nothing until the program installs an SDK.
//
// # Spans
//
// "kannuki.acquire" covers one acquisition, from the attempt to the grant or
// the refusal. Kannuki's events carry no span, so the span is made after
// the outcome, with the start and end the events gave: it has the true
// start and end, and its parent is the span in the caller's context. Spans
// made by the database driver while waiting are therefore its siblings,
// not its children. If the call found the lock held and waited
// (kannuki.EventWaiting), the span has a "kannuki.waiting" event at the
// moment the wait began. "kannuki.hold" (Options.SpanHold) covers the time
// the lock was held, made the same way after the release or loss.
//
// Span attributes: db.system.name (Options.DBSystem), kannuki.lock.mode,
// kannuki.lock.outcome and, for failures, error.type. The key
// (kannuki.lock.key) and error messages, which may contain the key, are
// added only with Options.KeyAttribute: keys can name customers or orders.
//
// # Metrics
//
//	kannuki.lock.wait.duration  histogram, s     time to acquire, by mode and outcome
//	kannuki.lock.hold.duration  histogram, s     time held, by mode
//	kannuki.lock.acquisitions   counter          acquisitions by mode and outcome
//	kannuki.lock.contended      counter          acquisitions that found the lock held and waited, by mode
//	kannuki.lock.held           up-down counter  locks held now, by mode
//	kannuki.lock.waiting        up-down counter  calls acquiring now, by mode
//	kannuki.lock.lost           counter          locks lost while held, by mode
//	kannuki.job.skipped         counter          jobs skipped as duplicates
//
// The counters and up-down counters are asynchronous instruments: events
// add to atomics and the SDK reads them at collection.
//
// Outcomes are "acquired" or the reason a lock was not acquired: "held",
// "timeout", "canceled", "deadlock", "error", "retries_exhausted",
// "pool_exhausted", or
// "unknown" for a reason newer than this package. Lock keys are never
// metric attributes: they are unbounded and would explode the number of
// series.
//
// kannuki.lock.contended and the "kannuki.waiting" span event come from
// kannuki.EventWaiting. The memory and file backends and a Locker's local
// queue report a wait as it begins; the database backends wait inside one
// statement, so there they mark the attempts still unanswered after
// kannuki.Options.WaitingAfter, which a slow grant can be too.
//
// The instrumentation scope of the tracer and the meter is this package's
// import path.
//
// # Batching
//
// An event only counts and keeps a small record; the spans and the
// histogram values are handed to the SDK from a timer's goroutine, many at
// a time, at most Options.FlushDelay (100 ms by default) after their
// events. A collection of the metrics hands over what is pending first, so
// the metrics it reads are complete; for spans, call Hook.Flush before
// shutting the TracerProvider down, or those of the last FlushDelay are
// lost. A negative FlushDelay hands each over on the locking goroutine, as
// it happens.
//
// # Cost
//
// The SDK's batch span processor wakes its goroutine for every span handed
// to it; on a two-core machine that, with making the span and recording
// the histograms, costs a locking goroutine 10 to 25% of an uncontended
// PostgreSQL lock and unlock (BenchmarkCyclePostgresUnbatched). Batched,
// that work moves off the locking goroutine, which pays for an event a few
// atomic additions and, for an outcome or a release, a copy under a mutex,
// and allocates nothing: the same cycle with this package's defaults and
// kannukiprom takes a few percent longer than without hooks
// (BenchmarkCyclePostgres here and in examples/metrics). The flushes still
// use the CPU: sample root spans (sdktrace.ParentBased with a ratio, or
// NeverSample to trace locks only inside sampled requests) to keep
// acquisitions outside traced requests cheap; metrics are unaffected.
package kannukiotel
