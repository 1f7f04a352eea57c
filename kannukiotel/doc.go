// Package kannukiotel reports Kannuki lock events to OpenTelemetry: a span
// for each acquisition (and, if asked, one for each hold) and metrics for
// wait and hold times, outcomes, and locks held and awaited.
//
//	hook, err := kannukiotel.NewHook(kannukiotel.Options{DBSystem: "postgresql"})
//	if err != nil { ... }
//	l := kannuki.New(backend, kannuki.Options{Hook: hook})
//
// With no providers in Options the OpenTelemetry globals are used, so the
// hook costs next to nothing until the program installs an SDK.
//
// # Spans
//
// "kannuki.acquire" covers one acquisition, from the attempt to the grant or
// the refusal. Kannuki's events carry no span, so the span is recorded when
// the outcome is known, with its start set back by the time waited: it has
// the true start and end, and its parent is the span in the caller's
// context. Spans made by the database driver while waiting are therefore
// its siblings, not its children. "kannuki.hold" (Options.SpanHold) covers
// the time the lock was held, recorded the same way at release or loss.
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
//	kannuki.lock.held           up-down counter  locks held now, by mode
//	kannuki.lock.waiting        up-down counter  calls acquiring now, by mode
//	kannuki.lock.lost           counter          locks lost while held, by mode
//	kannuki.job.skipped         counter          jobs skipped as duplicates
//
// The counters and up-down counters are asynchronous instruments: events
// add to atomics and the SDK reads them at collection, so an acquisition
// costs the SDK one histogram measurement and a span, and a release one
// histogram measurement.
//
// Outcomes are "acquired" or the reason a lock was not acquired: "held",
// "timeout", "canceled", "deadlock", "error", "retries_exhausted", or
// "unknown" for a reason newer than this package. Lock keys are never
// metric attributes: they are unbounded and would explode the number of
// series.
//
// The instrumentation scope of the tracer and the meter is this package's
// import path.
//
// # Cost
//
// On no-op providers (no SDK installed) the hook costs a few hundred
// nanoseconds per lock. With the SDK, the two histogram measurements cost
// about a microsecond, and a recorded span several: on a small machine
// that is a few percent of an uncontended PostgreSQL lock and unlock, most
// of it the span. Sample root spans (sdktrace.ParentBased with a ratio, or
// NeverSample to trace locks only inside sampled requests) to keep
// acquisitions outside traced requests cheap; metrics are unaffected.
package kannukiotel
