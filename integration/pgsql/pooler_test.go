package pgsql

import (
	"context"
	"database/sql"
	"errors"
	"testing"
	"time"

	"github.com/kannuki-go/kannuki/store"

	"github.com/kannuki-go/kannuki"
	"github.com/kannuki-go/kannuki/kannukipg"
)

// TestSessionLocksRefusedBehindPgBouncer: on pgx/stdlib through PgBouncer
// in transaction mode, session locks are refused with ErrUnsupported before
// any lock is taken, while transaction-scoped locks work through the same
// pool.
func TestSessionLocksRefusedBehindPgBouncer(t *testing.T) {
	db := openBouncer(t, drivers[0], "&default_query_exec_mode=simple_protocol", 4)
	b := kannukipg.New(db, kannukipg.Options{})
	obs := newObserver(t)
	k := uniqueKey(t, "k")
	ctx := ctxT(t, 30*time.Second)

	for range 2 { // the second call uses the remembered answer
		_, err := b.Acquire(ctx, k, store.Request{Wait: 0})
		if !errors.Is(err, kannuki.ErrUnsupported) || errors.Is(err, kannuki.ErrNotAcquired) {
			t.Fatalf("session lock through PgBouncer: got %v, want ErrUnsupported", err)
		}
	}
	l := kannuki.New(b, kannuki.Options{})
	ran := false
	err := l.WithLock(ctx, k.String, func(context.Context) error { ran = true; return nil })
	if !errors.Is(err, kannuki.ErrUnsupported) || ran {
		t.Fatalf("WithLock through PgBouncer: %v (fn ran: %v), want ErrUnsupported without running fn", err, ran)
	}
	if n := obs.held(t, k); n != 0 {
		t.Fatalf("%d sessions hold the key after the refusals", n)
	}
	if st := db.Stats(); st.InUse != 0 {
		t.Fatalf("%d connections still in use after the refusals", st.InUse)
	}

	// A transaction-scoped lock through the same pool.
	err = kannuki.InTx(ctx, l, k.String, func(ctx context.Context, tx *sql.Tx) error {
		if n := obs.held(t, k); n != 1 {
			t.Errorf("%d sessions hold the key inside the transaction, want 1", n)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("InTx through PgBouncer: %v", err)
	}
}

// TestSessionPoolerOption: Options.SessionPooler skips the check (for
// PgBouncer in session mode). To take no session lock through the
// transaction-mode PgBouncer here, the key is held elsewhere: the try is
// refused as held, not as unsupported.
func TestSessionPoolerOption(t *testing.T) {
	direct, _ := newBackend(t, drivers[0], 1)
	k := uniqueKey(t, "k")
	holder := mustAcquire(t, direct, k, store.Request{})
	defer mustRelease(t, holder)
	db := openBouncer(t, drivers[0], "&default_query_exec_mode=simple_protocol", 2)
	b := kannukipg.New(db, kannukipg.Options{SessionPooler: true})
	_, err := b.Acquire(ctxT(t, 30*time.Second), k, store.Request{Wait: 0})
	if !errors.Is(err, kannuki.ErrNotAcquired) || errors.Is(err, kannuki.ErrUnsupported) {
		t.Fatalf("try of a held key with SessionPooler set: %v, want ErrNotAcquired", err)
	}
}
