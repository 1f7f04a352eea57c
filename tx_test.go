package kannuki_test

import (
	"context"
	"errors"
	"testing"

	"github.com/kannuki-go/kannuki/keys"
	"github.com/kannuki-go/kannuki/store"

	"github.com/kannuki-go/kannuki"
)

// memTx is the "transaction" of txChanBackend: enough to test InTx's and
// LockTx's own logic; real transactions are tested with the database backends.
type memTx struct {
	committed, rolledBack bool
	leases                []store.Lease
	opts                  any // Request.TxOptions it began with
}

type txChanBackend struct{ *chanBackend }

func (b txChanBackend) AcquireTx(ctx context.Context, tx *memTx, k store.Key, req store.Request) error {
	lease, err := b.Acquire(ctx, k, req)
	if err != nil {
		return err
	}
	tx.leases = append(tx.leases, lease)
	return nil
}

func (b txChanBackend) RunTx(ctx context.Context, k store.Key, req store.Request, fn func(context.Context, *memTx) error) (err error) {
	tx := &memTx{opts: req.TxOptions}
	if err := b.AcquireTx(ctx, tx, k, req); err != nil {
		return err
	}
	defer func() {
		if r := recover(); r != nil {
			tx.rolledBack = true
			b.end(tx)
			panic(r)
		}
		tx.committed, tx.rolledBack = err == nil, err != nil
		b.end(tx)
	}()
	return fn(ctx, tx)
}

func (b txChanBackend) end(tx *memTx) {
	for _, l := range tx.leases {
		_ = l.Release(context.Background())
	}
}

func TestInTx(t *testing.T) {
	b := txChanBackend{newChanBackend()}
	l := kannuki.New(b, kannuki.Options{})
	ctx := context.Background()

	var seen *memTx
	err := kannuki.InTx(ctx, l, "invoice/7", func(ctx context.Context, tx *memTx) error {
		seen = tx
		if held, _ := l.Held(ctx, "invoice/7"); !held {
			t.Error("not held inside the transaction")
		}
		return nil
	})
	if err != nil || !seen.committed {
		t.Fatalf("commit path: %v %+v", err, seen)
	}
	want := errors.New("insert failed")
	err = kannuki.InTx(ctx, l, "invoice/7", func(ctx context.Context, tx *memTx) error { seen = tx; return want })
	if !errors.Is(err, want) || !seen.rolledBack {
		t.Fatalf("rollback path: %v %+v", err, seen)
	}
	if s := l.Stats(); s.Held != 0 || s.Acquired != 2 || s.Released != 2 {
		t.Fatalf("stats %+v", s)
	}

	// Not granted: fn does not run, the error is typed.
	h, _ := l.Acquire(ctx, "invoice/7")
	err = kannuki.InTx(ctx, l, "invoice/7", func(context.Context, *memTx) error { t.Error("fn ran"); return nil }, kannuki.Timeout(0))
	if !isReason(err, kannuki.ReasonHeld) {
		t.Fatalf("held: %v", err)
	}
	h.Release(ctx)

	func() {
		defer func() {
			if recover() != "boom" {
				t.Fatal("panic did not propagate")
			}
		}()
		_ = kannuki.InTx(ctx, l, "invoice/7", func(context.Context, *memTx) error { panic("boom") })
	}()
	if held, _ := l.Held(ctx, "invoice/7"); held || l.Stats().Held != 0 {
		t.Fatal("panic left the lock held")
	}
}

func TestLockTx(t *testing.T) {
	b := txChanBackend{newChanBackend()}
	l := kannuki.New(b, kannuki.Options{})
	ctx := context.Background()
	tx := &memTx{}
	if err := kannuki.LockTx(ctx, l, tx, "k"); err != nil {
		t.Fatal(err)
	}
	if err := kannuki.LockTx(ctx, l, &memTx{}, "k", kannuki.Timeout(0)); !isReason(err, kannuki.ReasonHeld) {
		t.Fatalf("second transaction: %v", err)
	}
	b.end(tx)
	if s := l.Stats(); s.Held != 0 || s.Acquired != 1 {
		t.Fatalf("a transaction lock is not a counted hold: %+v", s)
	}
}

// TestTxOptions: InTx hands the TxOptions to RunTx; every other call,
// which opens no transaction, refuses them.
func TestTxOptions(t *testing.T) {
	b := txChanBackend{newChanBackend()}
	l := kannuki.New(b, kannuki.Options{})
	ctx := context.Background()
	type isolation string
	for _, opts := range []any{isolation("serializable"), nil} {
		var seen *memTx
		err := kannuki.InTx(ctx, l, "k", func(_ context.Context, tx *memTx) error { seen = tx; return nil }, kannuki.TxOptions(opts))
		if err != nil || seen == nil || seen.opts != opts {
			t.Fatalf("InTx with TxOptions(%v): %v, transaction %+v", opts, err, seen)
		}
	}
	opt := kannuki.TxOptions(isolation("serializable"))
	fn := func(context.Context) error { t.Error("fn ran"); return nil }
	for name, call := range map[string]func() error{
		"WithLock": func() error { return l.WithLock(ctx, "k", fn, opt) },
		"TryLock":  func() error { _, err := l.TryLock(ctx, "k", fn, opt); return err },
		"Acquire":  func() error { _, err := l.Acquire(ctx, "k", opt); return err },
		"LockTx":   func() error { return kannuki.LockTx(ctx, l, &memTx{}, "k", opt) },
	} {
		if err := call(); !errors.Is(err, kannuki.ErrInvalidArgument) {
			t.Errorf("%s with TxOptions: %v, want ErrInvalidArgument", name, err)
		}
	}
	if s := l.Stats(); s.Held != 0 {
		t.Fatalf("stats after the refusals: %+v", s)
	}
}

func TestTxUnsupported(t *testing.T) {
	l, _ := newLocker(kannuki.Options{})
	ctx := context.Background()
	if err := kannuki.LockTx(ctx, l, &memTx{}, "k"); !errors.Is(err, kannuki.ErrUnsupported) {
		t.Fatalf("LockTx: %v", err)
	}
	err := kannuki.InTx(ctx, l, "k", func(context.Context, *memTx) error { return nil })
	if !errors.Is(err, kannuki.ErrUnsupported) {
		t.Fatalf("InTx: %v", err)
	}
	if err := kannuki.InTx[*memTx](ctx, l, "k", nil); !errors.Is(err, kannuki.ErrInvalidArgument) {
		t.Fatalf("nil fn: %v", err)
	}
}

func TestDefinitionTransactionForm(t *testing.T) {
	numbering := keys.Define[int64]("number_generation")
	b := txChanBackend{newChanBackend()}
	l := kannuki.New(b, kannuki.Options{KeyPrefix: "billing"})
	ctx := context.Background()
	err := kannuki.InTx(ctx, l, numbering.Key(7), func(ctx context.Context, tx *memTx) error {
		if held, _ := l.Held(ctx, numbering.Key(7)); !held {
			t.Error("definition key not held in the transaction")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
