package kannukimysql

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/kannuki-go/kannuki/store"

	"github.com/kannuki-go/kannuki/internal/txopts"
)

var (
	_ store.TxRunner[*sql.Tx]  = (*Backend)(nil)
	_ store.TxBackend[*sql.Tx] = (*Backend)(nil)
)

// AcquireTx always fails with an error matching store.ErrUnsupported:
// MySQL and MariaDB have no transaction-scoped locks, and a GET_LOCK taken
// on a caller's transaction would outlive the transaction (and go back to
// the pool with the connection). Use kannuki.InTx, which opens the
// transaction itself and releases the lock after it ends.
func (b *Backend) AcquireTx(context.Context, *sql.Tx, store.Key, store.Request) error {
	return fmt.Errorf("%w: MySQL and MariaDB have no transaction-scoped locks (GET_LOCK belongs to the session, not the transaction); "+
		"use kannuki.InTx, which holds the lock on the transaction's own connection until after COMMIT or ROLLBACK", store.ErrUnsupported)
}

// RunTx implements store.TxRunner (kannuki.InTx): it takes the lock with
// GET_LOCK on a pinned connection, begins a transaction on that same
// connection, runs fn, commits when fn returns nil and rolls back otherwise
// (also on a panic, which propagates), and only then releases the lock, so
// the next holder sees the committed data. The transaction begins with
// req.TxOptions (a *sql.TxOptions, from kannuki.TxOptions) when set.
func (b *Backend) RunTx(ctx context.Context, key store.Key, req store.Request, fn func(context.Context, *sql.Tx) error) (err error) {
	if fn == nil {
		return fmt.Errorf("%w: kannukimysql: nil function", store.ErrInvalidArgument)
	}
	txOpts, err := txopts.SQL(req.TxOptions, "kannukimysql")
	if err != nil {
		return err
	}
	ls, err := b.Acquire(ctx, key, req)
	if err != nil {
		return err
	}
	l := ls.(*lease)
	// The lock must outlive ctx's cancellation long enough to be released
	// after the rollback, so release uses a context of its own.
	release := func() error { return l.Release(context.WithoutCancel(ctx)) }
	tx, err := l.conn.BeginTx(ctx, txOpts)
	if err != nil {
		return errors.Join(fmt.Errorf("begin transaction: %w", err), release())
	}
	ended := false
	defer func() {
		if !ended && err == nil { // fn panicked
			_ = tx.Rollback()
			_ = release()
		}
	}()
	if ferr := fn(ctx, tx); ferr != nil {
		rerr := tx.Rollback()
		if errors.Is(rerr, sql.ErrTxDone) {
			rerr = nil // fn or a canceled ctx already ended it
		}
		ended = true // nothing left for the deferred clean-up
		return errors.Join(ferr, rerr, release())
	}
	cerr := tx.Commit()
	ended = true
	if cerr != nil {
		cerr = fmt.Errorf("commit: %w", cerr)
	}
	return errors.Join(cerr, release())
}
