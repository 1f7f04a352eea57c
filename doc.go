// Package kannuki provides distributed mutual exclusion on the advisory locks
// databases already have: PostgreSQL pg_advisory_*, MySQL/MariaDB GET_LOCK,
// OS file locks on one host, and an in-process backend for tests.
//
// A Locker combines a lock store (a store.Backend: kannukipg, kannukipgxv5,
// kannukimysql, kannukifile, kannukimem) with options (key prefix, default
// timeout, strategy, keepalive, events):
//
//	l := kannuki.New(kannukipg.New(db, kannukipg.Options{}), kannuki.Options{KeyPrefix: "myapp"})
//	err := l.WithLock(ctx, "order_processing/123", func(ctx context.Context) error {
//		return process(ctx, 123) // runs in one process at a time, cluster-wide
//	})
//
// # Entry points
//
// WithLock waits as the timeout and strategy say and returns a
// *NotAcquiredError when the lock is not granted (the Ruby gem's with_lock
// and lock!). TryLock tries once and returns (false, nil) when the key is
// held elsewhere. Acquire returns a Handle for code that cannot use a
// callback (with Timeout(0), one try). InTx and LockTx take locks that end
// with a transaction. The package global holds an optional process-wide
// Locker for code that wants the Ruby module functions.
//
// # Timeouts
//
// The three states are distinct: NoTimeout waits as long as the context
// allows; Timeout(0) tries once; Timeout(d) waits up to d. Without an
// option, Options.DefaultTimeout applies (0: no timeout). The context's
// deadline always bounds the wait too. Waits happen on the database server,
// never by polling (except with the Retry strategy, which exists to poll).
//
// # Guarantees
//
// Never two exclusive holders. A lock is never left behind on a pooled
// connection: when in doubt, backends destroy the connection. A lost lock
// (connection killed, database restarted) is noticed by a keepalive every
// Options.KeepaliveInterval, cancels the context given to fn and makes the
// call return an error matching ErrLockLost. A crashed process frees its
// locks, because the database ends its session.
//
// # Re-entrancy
//
// A nested WithLock or TryLock on the same Locker and key, given the
// context fn received, runs at once without asking the database (upgrading a
// shared lock to exclusive that way fails with ErrDeadlock). Another
// goroutine, or a call with an unrelated context, waits like for a mutex.
//
// # Keys
//
// Keys derive to database locks exactly as the Ruby kannuki gem does
// (keys.Ruby, the default), so Go and Rails code exclude each other on the
// same key; KEYS.md in the repository is the specification. The empty key
// is rejected with ErrInvalidKey (in Ruby it is accepted; in Go it is almost
// always a bug), as are keys over keys.MaxKeyLen bytes, invalid UTF-8 and NUL
// bytes. Other schemes: keys.Advisory (the with_advisory_lock gem) and
// keys.Raw (caller-chosen ids).
//
// # Errors
//
// Errors match the sentinels with errors.Is and the typed errors
// (*NotAcquiredError, *LockLostError) with errors.As. Every error the Locker
// returns starts with "kannuki:" and says the key and the cause once.
package kannuki
