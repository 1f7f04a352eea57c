package kannuki

import (
	"context"
	"fmt"
	"time"

	"github.com/kannuki-go/kannuki/store"
)

// LockTx takes key inside tx, a transaction the caller opened and will end;
// the lock is released when tx commits or rolls back. Options work as for
// WithLock. The backend must implement TxBackend[Tx], else the error matches
// ErrUnsupported.
//
// Transaction locks are not re-entrant through contexts: taking the same
// key twice in one PostgreSQL transaction simply succeeds (the database
// counts it), which is also how it is released.
func LockTx[Tx any](ctx context.Context, l *Locker, tx Tx, key string, opts ...CallOption) error {
	if err := l.usable(ctx); err != nil {
		return err
	}
	tb, ok := l.backend.(store.TxBackend[Tx])
	if !ok {
		return fmt.Errorf("%w: %T cannot lock inside a %T", ErrUnsupported, l.backend, tx)
	}
	k, cfg, err := l.prepare(ctx, key, opts, callLock)
	if err != nil {
		return err
	}
	var w waitWatch
	_, _, err = l.obtain(ctx, k, cfg, reportUncounted, attemptFunc(func(ctx context.Context, req store.Request) (store.Lease, error) {
		if err := tb.AcquireTx(ctx, tx, k, req); err != nil {
			return nil, err
		}
		return txLease{}, nil
	}), &w)
	return err
}

// InTx opens a transaction on the backend, takes key for its lifetime, runs
// fn with it, and commits when fn returns nil; it rolls back when fn returns
// an error or panics (the panic propagates). The transaction has the
// driver's default options unless the call gives TxOptions. It returns fn's
// error, the commit's error, or a *NotAcquiredError when the lock was not
// granted (fn then did not run). The backend must implement TxRunner[Tx],
// else the error matches ErrUnsupported.
//
//	err := kannuki.InTx(ctx, l, "invoice_numbers/7", func(ctx context.Context, tx *sql.Tx) error {
//		// read the last number, insert the next one
//	})
func InTx[Tx any](ctx context.Context, l *Locker, key string, fn func(ctx context.Context, tx Tx) error, opts ...CallOption) error {
	if fn == nil {
		return fmt.Errorf("%w: nil function", ErrInvalidArgument)
	}
	if err := l.usable(ctx); err != nil {
		return err
	}
	r, ok := l.backend.(store.TxRunner[Tx])
	if !ok {
		var tx Tx
		return fmt.Errorf("%w: %T cannot run a %T", ErrUnsupported, l.backend, tx)
	}
	k, cfg, err := l.prepare(ctx, key, opts, callInTx)
	if err != nil {
		return err
	}
	run := &txRun[Tx]{l: l, k: k, mode: cfg.mode, fn: fn, start: time.Now()}
	lease, _, err := l.obtain(ctx, k, cfg, reportNone, attemptFunc(func(ctx context.Context, req store.Request) (store.Lease, error) {
		req.TxOptions = cfg.txOptions
		err := r.RunTx(ctx, k, req, run.body)
		if run.granted.IsZero() {
			return nil, err // fn did not run: the strategy may try again
		}
		return txLease{err: err}, nil
	}), &run.watch)
	if err != nil {
		return err
	}
	run.end(ctx)
	return lease.(txLease).err
}

// txRun carries one InTx call's state into the transaction body.
type txRun[Tx any] struct {
	l       *Locker
	k       store.Key
	mode    store.Mode
	fn      func(context.Context, Tx) error
	start   time.Time
	granted time.Time
	watch   waitWatch // obtain's; the body ends it, since the grant is reported from there
}

func (r *txRun[Tx]) body(ctx context.Context, tx Tx) (err error) {
	// The wait is over: end its watch before the grant is reported, so
	// that no EventWaiting can follow EventAcquired while fn runs.
	began := r.watch.finish()
	r.granted = time.Now()
	r.l.granted(ctx, r.k, r.mode, r.granted.Sub(r.start), began, true)
	done := false
	defer func() {
		if !done { // panic: the backend rolls back; count the hold as ended
			r.end(ctx)
		}
	}()
	err = r.fn(ctx, tx)
	done = true
	return err
}

// end reports that the transaction, and so the lock, ended.
func (r *txRun[Tx]) end(ctx context.Context) {
	r.l.released(ctx, r.k, r.mode, r.granted, nil)
}

// txLease stands for a lock that ends with its transaction; err carries
// InTx's result through the strategy.
type txLease struct{ err error }

func (txLease) Release(context.Context) error { return nil }
