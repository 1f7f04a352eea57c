package pgsql

import (
	"context"
	"fmt"
	"time"

	"github.com/kannuki-go/kannuki/store"
)

// TxRun is what RunTx needs of one driver, once it holds a connection.
// Its functions return the driver's errors as they are; RunTx says what
// failed.
type TxRun[Tx any] struct {
	// Begin begins the transaction on the connection.
	Begin func() (Tx, error)
	// Acquire takes the lock in tx: the backend's AcquireTx.
	Acquire func(tx Tx, req store.Request) error
	// Rollback rolls tx back; nil also when tx is over anyway.
	Rollback func(tx Tx) error
	// Commit commits tx.
	Commit func(tx Tx) error
}

// RunTx is the part of a backend's RunTx that follows getting a
// connection, which began at start: begin, take the lock with what is
// left of req.Wait, and run fn (RunTxBody).
func RunTx[Tx any](ctx context.Context, req store.Request, start time.Time, r TxRun[Tx], fn func(context.Context, Tx) error) error {
	tx, err := r.Begin()
	if err != nil {
		return fmt.Errorf("begin transaction: %w", err)
	}
	if req.Wait > 0 {
		req.Wait = max(req.Wait-time.Since(start), 0) // the connection's share of the budget is spent
	}
	return RunTxBody(ctx, tx, TxSteps{
		Acquire: func() error { return r.Acquire(tx, req) },
		Rollback: func() error {
			if err := r.Rollback(tx); err != nil {
				return fmt.Errorf("rollback: %w", err)
			}
			return nil
		},
		Commit: func() error {
			if err := r.Commit(tx); err != nil {
				return fmt.Errorf("commit: %w", err)
			}
			return nil
		},
		Prefix: "kannuki: ",
	}, fn)
}
