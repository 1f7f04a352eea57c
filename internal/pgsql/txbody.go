package pgsql

import (
	"context"
	"errors"
	"fmt"
)

// TxSteps are what RunTxBody needs of one driver's transaction.
type TxSteps struct {
	// Acquire takes the transaction-scoped lock.
	Acquire func() error
	// Rollback rolls back; nil when the transaction is over anyway.
	Rollback func() error
	// Commit commits; its error is returned as it is, so it wraps it.
	Commit func() error
	// Prefix starts the "not committed" error ("kannuki: ", "kannuki: pgx: ").
	Prefix string
}

// RunTxBody is the part of RunTx that both PostgreSQL backends share, once
// their transaction has begun: take the lock, run fn, and commit; roll
// back instead when the lock is refused, fn fails or panics (the panic
// goes on after the rollback), or ctx ended while fn ran.
func RunTxBody[Tx any](ctx context.Context, tx Tx, s TxSteps, fn func(context.Context, Tx) error) error {
	if err := s.Acquire(); err != nil {
		return errors.Join(err, s.Rollback())
	}
	done := false
	defer func() {
		if !done { // fn panicked
			_ = s.Rollback()
		}
	}()
	ferr := fn(ctx, tx)
	done = true
	if ferr != nil {
		return errors.Join(ferr, s.Rollback())
	}
	if cerr := ctx.Err(); cerr != nil {
		return errors.Join(fmt.Errorf("%snot committed: %w", s.Prefix, cerr), s.Rollback())
	}
	return s.Commit()
}
