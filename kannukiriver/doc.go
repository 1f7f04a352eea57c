// Package kannukiriver is River (github.com/riverqueue/river) worker
// middleware that lets only one job with the same kind and arguments run at
// a time, across all River clients and processes whose Lockers share a lock
// backend. It is built on package kannukijob.
//
// River's unique jobs stop duplicates from being inserted; this middleware
// stops duplicates that were inserted anyway (or on purpose, such as a
// periodic job) from running at the same time.
//
// # Keys
//
// The lock key is the job's kind, ":", and the canonical JSON of its
// encoded arguments: object keys sorted, white space dropped, numbers kept
// as written. So {"b":1,"a":2} and {"a":2,"b":1} are duplicates, while
// {"ids":["a-b"]} and {"ids":["a","b"]} are not. Options.KeyArgs narrows the
// key to part of the arguments. Arguments longer than MaxKeyArgsLen are
// hashed.
//
// # Conflicts
//
// A job that finds its duplicate running is handled as Options.OnConflict
// says:
//
//   - Skip (default): the middleware returns nil without running the
//     worker, so River completes the job. It is not silent: the Locker's
//     hooks (and Logger) receive a kannuki.EventSkipped event with the key,
//     and the job's recorded output is a SkipOutput that SkippedKey reads
//     back. Completion rather than cancellation was chosen because a skipped
//     duplicate is not an error: its work is being done by the job that
//     holds the lock, and River would otherwise keep a cancelled job with an
//     error for every harmless duplicate.
//   - Snooze: river.JobSnooze(Options.SnoozeAfter). The attempt is not
//     counted, so the job runs later, after the duplicate, however often it
//     is snoozed.
//   - Cancel: river.JobCancel with an error matching kannukijob.ErrDuplicate,
//     for those who want skipped duplicates to stand out as cancelled jobs.
//
// # Connections
//
// With a database backend (kannukipgxv5, kannukipg) each running guarded job
// holds a session lock, and so one pooled connection, until it returns. Use
// a pool for the Locker that is separate from River's and larger than the
// number of jobs that run at once.
package kannukiriver
