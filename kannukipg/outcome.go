package kannukipg

import "github.com/kannuki-go/kannuki/internal/pgsql"

// How a failed lock statement is judged (granted or not, the connection
// kept or destroyed) is internal/pgsql's, for both PostgreSQL backends
// (verdict.go, Settle). For a held lock (an unlock, a relock, a
// keepalive) every failure is in doubt: the connection is destroyed and
// the lease told at once (store.LossWatcher) that its lock is lost. A
// relock whose try fails for the lock table (53200) has given the lock
// back already (the try runs only after an unlock that returned true):
// that is a release, and the connection goes back to the pool.

// notGranted reports whether a statement that failed with err cannot have
// granted the lock: the shared lock table was full.
func notGranted(err error) bool { return sqlState(err) == pgsql.CodeLockTableFull }
