// Package kannukiasynq is asynq (github.com/hibiken/asynq) middleware that
// lets only one task with the same type and payload run at a time, across
// all asynq servers and processes whose Lockers share a lock backend. It is
// built on package kannukijob.
//
// asynq's Unique and TaskID options stop duplicates from being enqueued
// while one is pending; this middleware stops duplicates that were enqueued
// anyway (after the uniqueness window, by another producer, by a periodic
// task) from running at the same time.
//
// The Redis that carries the queue need not hold the locks: any Kannuki
// backend works (kannukipgxv5 or kannukipg on PostgreSQL, kannukimysql,
// kannukifile for processes on one machine).
//
// # Keys
//
// The lock key is the task type, ":", and the canonical JSON of the payload
// (see Key): {"b":1,"a":2} and {"a":2,"b":1} are duplicates, {"ids":["a-b"]}
// and {"ids":["a","b"]} are not. Options.KeyPayload narrows the key to part
// of the payload.
//
// # Conflicts
//
// A task that finds its duplicate running is handled as Options.OnConflict
// says:
//
//   - Skip (default): the middleware returns nil without calling the
//     handler, so asynq completes the task. The skip is reported as a
//     kannuki.EventSkipped event to the Locker's hooks (and Logger) and as
//     the task's result, a SkipResult (visible with asynq.Retention). nil was
//     chosen over asynq.SkipRetry, which archives the task as failed, and
//     over asynq.RevokeTask, which logs a warning and calls the
//     ErrorHandler: a skipped duplicate is not an error, its work is being
//     done by the task holding the lock.
//   - RetryLater: the middleware returns a *kannukijob.RetryLaterError and
//     asynq retries the task. asynq has no per-error delay of its own, so
//     set asynq.Config.RetryDelayFunc to RetryDelay(...) for the delay to be
//     Options.RetryAfter, and asynq.Config.IsFailure to IsFailure(...) so
//     that deferrals do not use up the task's MaxRetry.
package kannukiasynq
