package pgsql

import (
	"errors"
	"fmt"

	"github.com/kannuki-go/kannuki/store"
)

// What a failed lock statement (a try, a wait, the unlock-and-try of a
// relock) says about the session that ran it, for both PostgreSQL
// backends. Only what is truly in doubt costs a connection (and, on a
// shared connection, the locks of every lease on it):
//
//   - Not granted: SQLSTATE 53200 (out of shared memory: the server's
//     shared lock table is full). The lock manager refuses before it
//     grants; the connection is kept with its other locks and the caller
//     gets CapacityError. No pg_locks query runs (it would fail with 53200
//     too); an unlock needs no room in the table, so a backend may unlock
//     the key once to be sure.
//   - Maybe granted: another server error on a live connection, within
//     ReleaseTimeout (55P03 lock_timeout, 40P01 deadlock, 57014 canceled,
//     26000 a prepared statement gone, ...): the grant can have come just
//     before the error. The backend settles it on the same session (asks
//     pg_locks, or unlocks the key where it knows the session holds it for
//     nobody else) and keeps the connection; a 55P03 that came with the
//     grant hands the lock out.
//   - In doubt: no answer (a network error, EOF), a FATAL error that ended
//     the session (57P01 pg_terminate_backend, a shutdown), a statement
//     past ReleaseTimeout, or a settling statement that failed as well.
//     The connection is destroyed, and every lease on it told at once
//     (store.LossWatcher): the server frees what the session held as it
//     ends it.
//
// A relock whose try part fails with 53200 has unlocked already (the try
// runs only after an unlock that returned true): it is a release, and the
// key is not taken again.

// CodeLockTableFull is SQLSTATE 53200, out_of_memory: "out of shared
// memory" when the shared lock table is full.
const CodeLockTableFull = "53200"

// CapacityError is the error of a lock statement (or a session start)
// refused with 53200: it matches store.ErrCapacity and the driver's error.
func CapacityError(err error) error {
	return fmt.Errorf("%w: PostgreSQL's shared lock table is full (SQLSTATE 53200). It is shared by every client of the server and "+
		"holds max_locks_per_transaction x (max_connections + max_prepared_transactions + background workers) locks, "+
		"more while spare shared memory lasts (12,784 with the defaults 64 and 100 on PostgreSQL 15); "+
		"raise max_locks_per_transaction (a server restart) to hold more, or bound this process with kannuki.Options.MaxHeld: %w",
		store.ErrCapacity, err)
}

// ErrUnlockFalse is the cause of a loss found by an unlock that returned
// false: the session did not hold the lock the books said it held.
var ErrUnlockFalse = errors.New("pg_advisory_unlock returned false: the session did not hold the lock")

// UnlockVerdict judges an unlock (or a relock's unlock part) that answered
// ok or failed with err; gone says that err shows the session ended (a
// closed connection, a FATAL error, the network), as opposed to an unlock
// whose outcome is unknown (no answer in time, a server error on a live
// session such as a pg_cancel_backend). It returns nil, nil when the lock
// was released. Otherwise the connection must be destroyed (closing it
// ends the session and frees what it held) and the verdict is why: with
// lost true the lock is lost (the session did not hold it, or is gone),
// with lost false whether the session still held it is unknown.
func UnlockVerdict(ok bool, err error, gone bool) (lost bool, verdict error) {
	switch {
	case err == nil && ok:
		return false, nil
	case err == nil:
		return true, ErrUnlockFalse
	case gone:
		return true, err
	}
	return false, fmt.Errorf("unlock failed, connection closed (the server frees the lock as the session ends): %w", err)
}
