package kannukipgxv5

import (
	"context"
	"errors"
	"testing"

	"github.com/kannuki-go/kannuki/store"

	"github.com/kannuki-go/kannuki"
)

// TestSessionLocksRefusedBehindPgBouncer: through PgBouncer in transaction
// mode, session locks are refused with ErrUnsupported before any lock is
// taken, while transaction-scoped locks, Held and Locks work.
func TestSessionLocksRefusedBehindPgBouncer(t *testing.T) {
	pool := pgBouncerPool(t, "simple_protocol", 4)
	b := New(pool, Options{})
	obs := newObserver(t)
	k := newKey(t, "k")
	ctx, cancel := guardCtx()
	defer cancel()

	for range 2 { // the second call uses the remembered answer
		_, err := b.Acquire(ctx, k, excl(0))
		if !errors.Is(err, store.ErrUnsupported) || errors.Is(err, store.ErrNotAcquired) {
			t.Fatalf("session lock through PgBouncer: got %v, want ErrUnsupported", err)
		}
	}
	ran := false
	err := kannuki.New(b, kannuki.Options{}).WithLock(ctx, k.String, func(context.Context) error { ran = true; return nil })
	if !errors.Is(err, store.ErrUnsupported) || ran {
		t.Fatalf("WithLock through PgBouncer: %v (fn ran: %v), want ErrUnsupported without running fn", err, ran)
	}
	if rows := obs.rows(k); len(rows) != 0 {
		t.Fatalf("pg_locks after the refusals: %+v", rows)
	}
	if n := b.mux.size(); n != 0 { // multiplexing never applies behind a transaction pooler
		t.Fatalf("%d shared connections after the refusals", n)
	}

	// Transaction-scoped locks, Held and Locks through the same pool.
	tx := begin(t, pool)
	if err := b.AcquireTx(ctx, tx, k, excl(0)); err != nil {
		t.Fatal(err)
	}
	if held, err := b.Held(ctx, k); err != nil || !held {
		t.Fatalf("Held = %v, %v; want true", held, err)
	}
	infos, err := b.Locks(ctx)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, li := range infos {
		found = found || li.ID == k.ID && li.Granted
	}
	if !found {
		t.Fatalf("Locks does not list the transaction's lock")
	}
	rollback(t, tx)
	if held, err := b.Held(ctx, k); err != nil || held {
		t.Fatalf("Held after rollback = %v, %v; want false", held, err)
	}
}

// TestSessionPoolerOption: Options.SessionPooler skips the check (for
// PgBouncer in session mode). To take no session lock through the
// transaction-mode PgBouncer here, the key is held elsewhere: the try is
// refused as held, not as unsupported.
func TestSessionPoolerOption(t *testing.T) {
	direct := New(newPool(t, 1), Options{})
	k := newKey(t, "k")
	holder := mustAcquire(t, direct, k, excl(0))
	defer mustRelease(t, holder)
	b := New(pgBouncerPool(t, "simple_protocol", 2), Options{SessionPooler: true})
	ctx, cancel := guardCtx()
	defer cancel()
	_, err := b.Acquire(ctx, k, excl(0))
	notAcquired(t, err)
	if errors.Is(err, store.ErrUnsupported) {
		t.Fatalf("got %v with SessionPooler set", err)
	}
}
