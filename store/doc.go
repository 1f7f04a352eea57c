// Package store is the contract between the kannuki Locker and a lock
// store, in the way database/sql/driver is the contract between database/sql
// and a database driver: application code does not need it.
//
// A store implements Backend (take one lock, tell whether a key is held)
// and returns a Lease per held lock. Optional abilities are found by
// interface assertion: Checker and LossWatcher for lost locks, Relocker for
// handoffs inside a process, Lister for listings, TxBackend and TxRunner for
// transaction-scoped locks. The package backendtest holds the conformance
// suite every Backend must pass.
//
// Errors: a Backend wraps the sentinels of this package with %w and a plain
// cause, and never prefixes its messages with "kannuki:" or its own name;
// the Locker says that once.
package store
