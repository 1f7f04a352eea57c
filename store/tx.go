package store

import "context"

// TxBackend is implemented by backends that can lock inside a caller's
// transaction of type Tx (*sql.Tx for kannukipg, pgx.Tx for kannukipgxv5).
// The lock ends with the transaction, so nothing needs releasing, and it
// works behind transaction-mode poolers such as PgBouncer.
//
// AcquireTx waits as req says without spoiling the transaction: a timeout
// or cancellation leaves it usable (PostgreSQL: the wait runs inside a
// SAVEPOINT). Outside an open transaction it fails; it never pretends.
type TxBackend[Tx any] interface {
	AcquireTx(ctx context.Context, tx Tx, key Key, req Request) error
}

// TxRunner is implemented by backends that can open a transaction, take a
// lock that lasts until it ends, run fn in it, and commit when fn returns
// nil or roll back on an error or a panic (which then propagates).
// AcquireTx-capable backends use a transaction-scoped lock; others (MySQL)
// hold a session lock on the transaction's connection and release it after
// the commit or rollback.
//
// RunTx must return an error matching ErrNotAcquired, without calling fn,
// when the lock is not granted.
type TxRunner[Tx any] interface {
	RunTx(ctx context.Context, key Key, req Request, fn func(ctx context.Context, tx Tx) error) error
}
