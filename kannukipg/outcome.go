package kannukipg

import (
	"github.com/kannuki-go/kannuki/store"

	"github.com/kannuki-go/kannuki/internal/pgsql"
)

// What a failed lock statement leaves behind. A session lock that the
// Backend cannot show to be given back must not go back to the pool, and a
// connection that surely holds nothing must not be destroyed for nothing:
// destroying a connection ends its session, which costs the connection and
// tells every lease on it that its lock is lost. So every failure of a try
// or a wait is one of:
//
//   - Not granted: PostgreSQL raised the error before it granted anything.
//     The connection holds nothing and goes back to the pool; no clean-up
//     statement runs (none is needed, and with a full lock table a
//     pg_locks query fails as well). Only codeLockTableFull (53200, out of
//     shared memory: the shared lock table has no room for the lock) is in
//     this class; the caller gets an error matching store.ErrCapacity.
//   - Answered, grant possible: the server answered with another SQLSTATE
//     (55P03 lock_timeout, 40P01 deadlock, 57014 canceled, ...). A wait
//     can have been granted at the last moment, so the Backend asks the
//     still usable session whether it holds the lock, unlocks if so, and
//     then pools the connection; if that clean-up fails, the connection is
//     destroyed.
//   - In doubt: no answer (a lost socket, a statement cut short by a
//     timeout or the socket watchdog, the driver's own cancellation), an
//     answer that ended the session (class 08, 57P01-57P05), or a failed
//     try with any other code. The connection is destroyed; the server then
//     frees whatever its session held.
//
// For a held lock (an unlock, a relock, a keepalive) every failure is in
// doubt: the connection is destroyed and the lease told at once
// (store.LossWatcher) that its lock is lost. A relock whose try fails
// for the lock table (53200) has given the lock back already (the try runs
// only after an unlock that returned true): that is a release, and the
// connection goes back to the pool.
const codeLockTableFull = pgsql.CodeLockTableFull

// notGranted reports whether a try or a wait that failed with err cannot
// have granted the lock, so that its connection holds nothing.
func notGranted(err error) bool { return sqlState(err) == codeLockTableFull }

// capacityError is the error of a lock PostgreSQL refused for its full
// lock table (internal/pgsql.CapacityError).
func capacityError(_ store.Key, err error) error { return pgsql.CapacityError(err) }
