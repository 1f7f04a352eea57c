package pgsql

import (
	"math"
	"time"

	"github.com/kannuki-go/kannuki/store"
)

// Transaction-scoped locks (pg_advisory_xact_lock) for kannukipg and
// kannukipgxv5 alike. The statements take no arguments (the id as a
// literal, the key in a comment), so that they run on the simple protocol,
// several in one text, nothing prepared: one round trip each, and they
// work behind PgBouncer in transaction mode.
const (
	// Savepoint wraps a wait, so that its failure (lock_timeout, a
	// deadlock, a cancel) can be rolled back without aborting the caller's
	// transaction, and so that a grant that raced a cancellation can still
	// be undone: ROLLBACK TO SAVEPOINT releases a transaction lock taken
	// after the savepoint.
	Savepoint = "kannuki_xact_lock"
	// SavedLockTimeout is a custom setting that keeps the caller's
	// lock_timeout while the wait runs with its own; transaction-local like
	// every setting the wait changes.
	SavedLockTimeout = "kannuki.saved_lock_timeout"

	// ReleaseSavepoint ends the wait's savepoint and keeps what the wait
	// took: the lock and the restored lock_timeout.
	ReleaseSavepoint = "RELEASE SAVEPOINT " + Savepoint
	// RollbackSavepoint ends the wait's savepoint and undoes it: a lock
	// granted inside it is given up, lock_timeout is the caller's again,
	// and a transaction aborted inside it is usable again.
	RollbackSavepoint = "ROLLBACK TO SAVEPOINT " + Savepoint + "; RELEASE SAVEPOINT " + Savepoint
	// CheckTx fails (CodeNoActiveTx) unless the session is in a
	// transaction block: a transaction lock taken outside a block would end
	// with its statement. It can run in front of XactTry in the same round
	// trip.
	CheckTx = "SAVEPOINT " + Savepoint + "; RELEASE SAVEPOINT " + Savepoint
)

// SQLSTATE codes of a statement sent outside an open transaction.
const (
	CodeNoActiveTx = "25P01" // no_active_sql_transaction (SAVEPOINT outside a transaction block)
	CodeTxAborted  = "25P02" // in_failed_sql_transaction
)

// MaxLockTimeout is the largest lock_timeout PostgreSQL accepts (INT_MAX
// milliseconds, about 24.8 days); longer timed waits are cut to it.
const MaxLockTimeout = math.MaxInt32 * time.Millisecond

// XactTry is one statement returning whether the transaction got the lock.
// pg_try_advisory_xact_lock never waits, so it cannot fail the way a wait
// can (lock_timeout, deadlock) and needs no savepoint. Like every
// statement here it shows k.String in a Comment: the caller passes it as
// valid UTF-8, which PostgreSQL requires of comments too.
func XactTry(k store.Key, m store.Mode) string {
	return "SELECT pg_try_advisory_xact_lock" + suffix(m) + "(" + Args(k) + ") " + Comment(k.String)
}

// XactWait opens Savepoint, keeps the caller's lock_timeout in
// SavedLockTimeout, sets the wait's own, waits, and puts the caller's
// lock_timeout back. wait > 0 bounds the wait (cut to MaxLockTimeout;
// expiry raises CodeLockNotAvailable); wait <= 0 sets lock_timeout 0, which
// waits until granted whatever the caller's setting. set_config(..., true)
// lasts until the end of the transaction (RELEASE SAVEPOINT keeps it),
// hence the explicit restore. The savepoint stays open: the caller ends it
// with ReleaseSavepoint once it knows the grant is wanted, or with
// RollbackSavepoint, which also restores lock_timeout when the wait failed.
func XactWait(k store.Key, m store.Mode, wait time.Duration) string {
	timeout := "0"
	if wait > 0 {
		timeout = LockTimeout(min(wait, MaxLockTimeout))
	}
	return "SAVEPOINT " + Savepoint + "; " +
		"SELECT set_config('" + SavedLockTimeout + "', current_setting('lock_timeout'), true), set_config('lock_timeout', '" + timeout + "', true); " +
		"SELECT pg_advisory_xact_lock" + suffix(m) + "(" + Args(k) + ") " + Comment(k.String) + "; " +
		"SELECT set_config('lock_timeout', current_setting('" + SavedLockTimeout + "'), true)"
}
