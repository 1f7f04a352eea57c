package kannukipgxv5

import (
	"context"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kannuki-go/kannuki/keys"
	"github.com/kannuki-go/kannuki/store"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/kannuki-go/kannuki"
	"github.com/kannuki-go/kannuki/internal/pgsql"
	"github.com/kannuki-go/kannuki/internal/testdb"
)

// txLocker is a Locker on b whose keys are unique to t.
type txLocker struct {
	*kannuki.Locker
	t      testing.TB
	prefix string
}

func newTxLocker(t testing.TB, b *Backend) txLocker {
	return txLocker{
		Locker: kannuki.New(b, kannuki.Options{KeyPrefix: "kannukipgxv5-tx-test"}),
		t:      t,
		prefix: t.Name() + "/" + randHex() + "/",
	}
}

// name is a key name unique to the test and this run.
func (l txLocker) name(what string) string { return l.prefix + what }

// key is the derived key of name, for the observer.
func (l txLocker) key(name string) store.Key {
	l.t.Helper()
	k, err := l.Key(name)
	if err != nil {
		l.t.Fatal(err)
	}
	return k
}

func begin(t testing.TB, pool *pgxpool.Pool) pgx.Tx {
	t.Helper()
	ctx, cancel := guardCtx()
	defer cancel()
	tx, err := pool.Begin(ctx)
	if err != nil {
		t.Fatalf("begin: %v", err)
	}
	t.Cleanup(func() { _ = tx.Rollback(context.Background()) })
	return tx
}

func commit(t testing.TB, tx pgx.Tx) {
	t.Helper()
	ctx, cancel := guardCtx()
	defer cancel()
	if err := tx.Commit(ctx); err != nil {
		t.Fatalf("commit: %v", err)
	}
}

func rollback(t testing.TB, tx pgx.Tx) {
	t.Helper()
	ctx, cancel := guardCtx()
	defer cancel()
	if err := tx.Rollback(ctx); err != nil {
		t.Fatalf("rollback: %v", err)
	}
}

func lockTx(t testing.TB, l txLocker, tx pgx.Tx, name string, opts ...kannuki.CallOption) {
	t.Helper()
	ctx, cancel := guardCtx()
	defer cancel()
	if err := kannuki.LockTx(ctx, l.Locker, tx, name, opts...); err != nil {
		t.Fatalf("LockTx(%q): %v", name, err)
	}
}

// showLockTimeout is SHOW lock_timeout in tx.
func showLockTimeout(t testing.TB, tx pgx.Tx) string {
	t.Helper()
	ctx, cancel := guardCtx()
	defer cancel()
	var s string
	if err := tx.QueryRow(ctx, "SHOW lock_timeout").Scan(&s); err != nil {
		t.Fatalf("SHOW lock_timeout: %v", err)
	}
	return s
}

// usable fails unless tx still runs statements and is not aborted.
func usable(t testing.TB, tx pgx.Tx) {
	t.Helper()
	ctx, cancel := guardCtx()
	defer cancel()
	var n int
	if err := tx.QueryRow(ctx, "SELECT 41 + 1").Scan(&n); err != nil || n != 42 {
		t.Fatalf("transaction not usable: %v (%d)", err, n)
	}
	if s := tx.Conn().PgConn().TxStatus(); s != 'T' {
		t.Fatalf("transaction status %q, want 'T'", s)
	}
}

func txPID(tx pgx.Tx) uint32 { return tx.Conn().PgConn().PID() }

// sequenceTable creates a table of numbers with no unique constraint (only
// the lock keeps them unique), dropped at the end of t.
func sequenceTable(t testing.TB, pool *pgxpool.Pool) string {
	t.Helper()
	ctx, cancel := guardCtx()
	defer cancel()
	table := "kannuki_pgxv5_tx_seq_" + randHex()
	if _, err := pool.Exec(ctx, "CREATE TABLE "+table+" (n int NOT NULL)"); err != nil {
		t.Fatalf("create table: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := guardCtx()
		defer cancel()
		_, _ = pool.Exec(ctx, "DROP TABLE IF EXISTS "+table)
	})
	return table
}

// nextNumber reads the highest number and inserts the next one: two
// statements that hand out duplicates unless the lock serializes them.
func nextNumber(ctx context.Context, tx pgx.Tx, table string) error {
	var n int
	if err := tx.QueryRow(ctx, "SELECT COALESCE(max(n), 0) FROM "+table).Scan(&n); err != nil {
		return err
	}
	_, err := tx.Exec(ctx, "INSERT INTO "+table+" (n) VALUES ($1)", n+1)
	return err
}

// checkSequence fails unless table holds exactly 1..n.
func checkSequence(t testing.TB, pool *pgxpool.Pool, table string, n int) {
	t.Helper()
	ctx, cancel := guardCtx()
	defer cancel()
	rows, err := pool.Query(ctx, "SELECT n FROM "+table+" ORDER BY n")
	if err != nil {
		t.Fatal(err)
	}
	got, err := pgx.CollectRows(rows, pgx.RowTo[int])
	if err != nil {
		t.Fatal(err)
	}
	want := make([]int, n)
	for i := range want {
		want[i] = i + 1
	}
	if !slices.Equal(got, want) {
		t.Fatalf("numbers: got %d rows, want exactly 1..%d; got %v", len(got), n, got)
	}
}

// runSequence hands out workers×each numbers from concurrent transactions,
// half through kannuki.InTx and half through the caller's own transaction
// and kannuki.LockTx, and checks for exactly 1..workers×each and for never
// two holders at once.
func runSequence(t *testing.T, pool *pgxpool.Pool, workers, each int, opts ...kannuki.CallOption) {
	b := New(pool, Options{})
	l := newTxLocker(t, b)
	table := sequenceTable(t, pool)
	name := l.name("sequence")
	var inside, maxInside atomic.Int32
	body := func(ctx context.Context, tx pgx.Tx) error {
		n := inside.Add(1)
		defer inside.Add(-1)
		for {
			m := maxInside.Load()
			if n <= m || maxInside.CompareAndSwap(m, n) {
				break
			}
		}
		return nextNumber(ctx, tx, table)
	}
	ctx, cancel := guardCtx()
	defer cancel()
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range each {
				var err error
				if w%2 == 0 {
					err = kannuki.InTx(ctx, l.Locker, name, body, opts...)
				} else {
					err = func() error {
						tx, err := pool.Begin(ctx)
						if err != nil {
							return err
						}
						defer func() { _ = tx.Rollback(ctx) }()
						if err := kannuki.LockTx(ctx, l.Locker, tx, name, opts...); err != nil {
							return err
						}
						if err := body(ctx, tx); err != nil {
							return err
						}
						return tx.Commit(ctx)
					}()
				}
				if err != nil {
					errs <- fmt.Errorf("worker %d: %w", w, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if t.Failed() {
		return
	}
	if m := maxInside.Load(); m != 1 {
		t.Errorf("%d holders at once", m)
	}
	checkSequence(t, pool, table, workers*each)
}

// TestTxSequence: 8 goroutines × 50 transactions hand out exactly 1..400
// with transaction-scoped locks, waiting forever and with a timeout.
func TestTxSequence(t *testing.T) {
	t.Run("wait forever", func(t *testing.T) {
		runSequence(t, newPool(t, 10), 8, 50)
	})
	t.Run("timeout", func(t *testing.T) {
		runSequence(t, newPool(t, 10), 8, 25, kannuki.Timeout(hangGuard))
	})
}

// pgBouncerPool opens a pool through PgBouncer in transaction pooling mode
// with the given query exec mode.
func pgBouncerPool(t testing.TB, mode string, maxConns int32) *pgxpool.Pool {
	t.Helper()
	cfg, err := pgxpool.ParseConfig(testdb.PgBouncerDSN() + "&default_query_exec_mode=" + mode)
	if err != nil {
		t.Fatalf("parse DSN: %v", err)
	}
	cfg.MaxConns = maxConns
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err == nil {
		err = pool.Ping(ctx)
	}
	if err != nil {
		if pool != nil {
			pool.Close()
		}
		testdb.Unavailable(t, "PgBouncer", err)
	}
	t.Cleanup(pool.Close)
	return pool
}

// TestTxSequencePgBouncer: the same through PgBouncer in transaction
// pooling mode, where every transaction may run on another server session:
// transaction-scoped locks still exclude. pgx needs a query exec mode
// without named prepared statements there (PgBouncer 1.18 does not track
// them): simple_protocol and exec both work.
func TestTxSequencePgBouncer(t *testing.T) {
	t.Run("simple_protocol", func(t *testing.T) {
		runSequence(t, pgBouncerPool(t, "simple_protocol", 10), 8, 50)
	})
	t.Run("exec", func(t *testing.T) {
		runSequence(t, pgBouncerPool(t, "exec", 10), 8, 25, kannuki.Timeout(hangGuard))
	})
}

// TestTxPgBouncerCacheStatement documents why: pgx's default mode
// (cache_statement, named prepared statements) fails behind PgBouncer 1.18
// in transaction mode as soon as two clients share a server session. The
// lock statements themselves are parameterless and do not need the cache.
func TestTxPgBouncerCacheStatement(t *testing.T) {
	pool := pgBouncerPool(t, "cache_statement", 4)
	ctx, cancel := guardCtx()
	defer cancel()
	var failed error
	for i := 0; i < 20 && failed == nil; i++ {
		c1, err := pool.Acquire(ctx)
		if err != nil {
			t.Fatal(err)
		}
		c2, err := pool.Acquire(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range []*pgxpool.Conn{c1, c2} {
			var n int
			if err := c.QueryRow(ctx, "SELECT $1::int", i).Scan(&n); err != nil {
				failed = err
			}
		}
		c1.Release()
		c2.Release()
	}
	if failed == nil {
		t.Skip("cache_statement worked behind this PgBouncer (1.21+ tracks prepared statements)")
	}
	t.Logf("as expected, cache_statement behind PgBouncer fails: %v", failed)
}

// TestTxReleasedAtEnd: the lock is held by the transaction's session until
// commit or rollback, and a third session sees it go.
func TestTxReleasedAtEnd(t *testing.T) {
	pool := newPool(t, 4)
	l := newTxLocker(t, New(pool, Options{}))
	obs := newObserver(t)
	for _, end := range []string{"commit", "rollback"} {
		t.Run(end, func(t *testing.T) {
			name := l.name(end)
			k := l.key(name)
			tx := begin(t, pool)
			lockTx(t, l, tx, name)
			rows := obs.rows(k)
			if len(rows) != 1 || rows[0].PID != txPID(tx) || !rows[0].Granted || rows[0].Mode != "ExclusiveLock" {
				t.Fatalf("pg_locks during the transaction: %+v, want one granted ExclusiveLock of pid %d", rows, txPID(tx))
			}
			// Taking it again in the same transaction succeeds (PostgreSQL counts it).
			lockTx(t, l, tx, name, kannuki.Timeout(0))
			if end == "commit" {
				commit(t, tx)
			} else {
				rollback(t, tx)
			}
			if rows := obs.rows(k); len(rows) != 0 {
				t.Fatalf("pg_locks after %s: %+v, want none", end, rows)
			}
		})
	}
	poolHoldsNone(t, pool)
}

// TestTxTryAndTimeout: a refused try and an expired wait leave the
// transaction usable, without the lock, and with lock_timeout as it was;
// a wait that is granted restores lock_timeout too.
func TestTxTryAndTimeout(t *testing.T) {
	pool := newPool(t, 4)
	l := newTxLocker(t, New(pool, Options{}))
	obs := newObserver(t)
	for _, setting := range []string{"", "7s"} {
		t.Run("lock_timeout="+setting, func(t *testing.T) {
			name := l.name("k" + setting)
			k := l.key(name)
			holder := begin(t, pool)
			lockTx(t, l, holder, name)

			tx := begin(t, pool)
			if setting != "" {
				if _, err := tx.Exec(context.Background(), "SET LOCAL lock_timeout = '"+setting+"'"); err != nil {
					t.Fatal(err)
				}
			}
			before := showLockTimeout(t, tx)
			ctx, cancel := guardCtx()
			defer cancel()

			err := kannuki.LockTx(ctx, l.Locker, tx, name, kannuki.Timeout(0))
			notAcquired(t, err)
			usable(t, tx)

			const wait = 100 * time.Millisecond
			start := time.Now()
			err = kannuki.LockTx(ctx, l.Locker, tx, name, kannuki.Timeout(wait))
			if took := time.Since(start); took < wait {
				t.Errorf("timed wait gave up after %s, before its %s", took, wait)
			}
			notAcquired(t, err)
			if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, store.ErrDeadlock) {
				t.Fatalf("timeout reported as %v", err)
			}
			usable(t, tx)
			if got := showLockTimeout(t, tx); got != before {
				t.Fatalf("lock_timeout after a timed-out wait: %q, want %q", got, before)
			}
			if rows := obs.rows(k); len(rows) != 1 || rows[0].PID != txPID(holder) {
				t.Fatalf("pg_locks: %+v, want only the holder %d", rows, txPID(holder))
			}

			// A timed wait that is granted while it waits.
			done := make(chan error, 1)
			go func() { done <- kannuki.LockTx(ctx, l.Locker, tx, name, kannuki.Timeout(hangGuard)) }()
			obs.waitWaiters(k, 1)
			commit(t, holder)
			if err := <-done; err != nil {
				t.Fatalf("wait: %v", err)
			}
			usable(t, tx)
			if got := showLockTimeout(t, tx); got != before {
				t.Fatalf("lock_timeout after a granted wait: %q, want %q", got, before)
			}
			if h := obs.holders(k); len(h) != 1 || h[0] != txPID(tx) {
				t.Fatalf("holders %v, want the waiter %d", h, txPID(tx))
			}
			// The wait's savepoint is gone: a ROLLBACK TO it fails.
			if _, err := tx.Exec(ctx, "ROLLBACK TO SAVEPOINT "+pgsql.Savepoint); err == nil {
				t.Fatal("the wait left its savepoint open")
			}
			rollback(t, tx)
		})
	}
	poolHoldsNone(t, pool)
}

// TestTxWaitForeverIgnoresLockTimeout: a wait without timeout is not cut by
// a lock_timeout the caller set, which stays in force afterwards.
func TestTxWaitForeverIgnoresLockTimeout(t *testing.T) {
	pool := newPool(t, 4)
	l := newTxLocker(t, New(pool, Options{}))
	obs := newObserver(t)
	name := l.name("k")
	k := l.key(name)
	holder := begin(t, pool)
	lockTx(t, l, holder, name)
	tx := begin(t, pool)
	if _, err := tx.Exec(context.Background(), "SET LOCAL lock_timeout = '10ms'"); err != nil {
		t.Fatal(err)
	}
	// No deadline on ctx: a deadline would become the wait's lock_timeout.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- kannuki.LockTx(ctx, l.Locker, tx, name, kannuki.NoTimeout()) }()
	obs.waitWaiters(k, 1)
	time.Sleep(50 * time.Millisecond) // well past the caller's 10ms lock_timeout
	select {
	case err := <-done:
		t.Fatalf("wait forever ended early: %v", err)
	default:
	}
	commit(t, holder)
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(hangGuard):
		t.Fatal("LockTx still waiting after the holder committed")
	}
	if got := showLockTimeout(t, tx); got != "10ms" {
		t.Fatalf("lock_timeout after the wait: %q, want 10ms", got)
	}
}

// TestTxDeadline: ctx's deadline ends a wait forever, reported as the
// deadline's error, and the transaction stays usable.
func TestTxDeadline(t *testing.T) {
	pool := newPool(t, 4)
	l := newTxLocker(t, New(pool, Options{}))
	name := l.name("k")
	holder := begin(t, pool)
	lockTx(t, l, holder, name)
	tx := begin(t, pool)
	before := showLockTimeout(t, tx)
	const d = 150 * time.Millisecond
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	start := time.Now()
	err := kannuki.LockTx(ctx, l.Locker, tx, name)
	if took := time.Since(start); took < d-10*time.Millisecond {
		t.Errorf("gave up after %s, before the %s deadline", took, d)
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("got %v, want the deadline's error", err)
	}
	usable(t, tx)
	if got := showLockTimeout(t, tx); got != before {
		t.Fatalf("lock_timeout %q, want %q", got, before)
	}
}

// TestTxDeadlock: two transactions that wait for each other's lock: one
// gets ErrDeadlock with its transaction still usable and without the lock
// it waited for; once it rolls back, the other gets its lock.
func TestTxDeadlock(t *testing.T) {
	pool := newPool(t, 4)
	l := newTxLocker(t, New(pool, Options{}))
	obs := newObserver(t)
	n1, n2 := l.name("one"), l.name("two")
	a, b := begin(t, pool), begin(t, pool)
	lockTx(t, l, a, n1)
	lockTx(t, l, b, n2)
	before := showLockTimeout(t, a)
	ctx, cancel := guardCtx()
	defer cancel()
	type result struct {
		tx  pgx.Tx
		err error
	}
	results := make(chan result, 2)
	go func() { results <- result{a, kannuki.LockTx(ctx, l.Locker, a, n2)} }()
	obs.waitWaiters(l.key(n2), 1)
	go func() { results <- result{b, kannuki.LockTx(ctx, l.Locker, b, n1)} }()

	victim := <-results // the survivor waits until the victim's transaction ends
	if !errors.Is(victim.err, store.ErrDeadlock) {
		t.Fatalf("got %v, want ErrDeadlock", victim.err)
	}
	usable(t, victim.tx)
	if got := showLockTimeout(t, victim.tx); got != before {
		t.Fatalf("victim's lock_timeout %q, want %q", got, before)
	}
	select {
	case r := <-results:
		t.Fatalf("the other transaction returned before the victim ended: %v", r.err)
	default:
	}
	rollback(t, victim.tx)
	survivor := <-results
	if survivor.err != nil {
		t.Fatalf("survivor: %v", survivor.err)
	}
	commit(t, survivor.tx)
	poolHoldsNone(t, pool)
}

// TestTxCancelWhileWaiting: cancelling ctx during a wait ends it with a
// cancel request, not by closing the connection: the transaction stays
// usable, is no longer queued, and holds nothing.
func TestTxCancelWhileWaiting(t *testing.T) {
	pool := newPool(t, 4)
	l := newTxLocker(t, New(pool, Options{}))
	obs := newObserver(t)
	name := l.name("k")
	k := l.key(name)
	holder := begin(t, pool)
	lockTx(t, l, holder, name)
	for _, wait := range []kannuki.CallOption{kannuki.NoTimeout(), kannuki.Timeout(hangGuard)} {
		tx := begin(t, pool)
		before := showLockTimeout(t, tx)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- kannuki.LockTx(ctx, l.Locker, tx, name, wait) }()
		pid := obs.waitWaiters(k, 1)[0]
		if pid != txPID(tx) {
			t.Fatalf("waiter pid %d, want %d", pid, txPID(tx))
		}
		cancel()
		var err error
		select {
		case err = <-done:
		case <-time.After(hangGuard):
			t.Fatal("LockTx did not return after cancel")
		}
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("got %v, want context.Canceled", err)
		}
		if tx.Conn().IsClosed() {
			t.Fatal("the connection was closed")
		}
		usable(t, tx)
		if got := showLockTimeout(t, tx); got != before {
			t.Fatalf("lock_timeout %q, want %q", got, before)
		}
		for _, r := range obs.rows(k) {
			if r.PID == txPID(tx) {
				t.Fatalf("canceled transaction still in pg_locks: %+v", r)
			}
		}
		rollback(t, tx)
	}
}

// TestTxGrantRacingCancel: when the wait is granted but ctx has ended by
// the time AcquireTx looks, the grant is undone (rollback to the savepoint)
// and the cancellation reported: an error always means the transaction
// does not hold the lock.
func TestTxGrantRacingCancel(t *testing.T) {
	pool := newPool(t, 4)
	b := New(pool, Options{})
	obs := newObserver(t)
	k := newKey(t, "k")
	holder := begin(t, pool)
	if err := b.AcquireTx(context.Background(), holder, k, excl(0)); err != nil {
		t.Fatal(err)
	}
	tx := begin(t, pool)
	before := showLockTimeout(t, tx)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ctx = context.WithValue(ctx, afterWaitKey{}, func() { cancel() })
	done := make(chan error, 1)
	go func() { done <- b.AcquireTx(ctx, tx, k, excl(store.WaitForever)) }()
	obs.waitWaiters(k, 1)
	commit(t, holder) // the wait is granted; then the hook cancels ctx
	err := <-done
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v, want context.Canceled", err)
	}
	usable(t, tx)
	if rows := obs.rows(k); len(rows) != 0 {
		t.Fatalf("pg_locks after the undone grant: %+v, want none", rows)
	}
	if got := showLockTimeout(t, tx); got != before {
		t.Fatalf("lock_timeout %q, want %q", got, before)
	}
}

// TestTxNotOpen: a committed or rolled-back transaction, or a connection
// whose transaction was ended by hand, is an error, never a silent lock.
func TestTxNotOpen(t *testing.T) {
	pool := newPool(t, 4)
	b := New(pool, Options{})
	l := newTxLocker(t, b)
	ctx, cancel := guardCtx()
	defer cancel()
	for _, end := range []string{"commit", "rollback"} {
		tx := begin(t, pool)
		if end == "commit" {
			commit(t, tx)
		} else {
			rollback(t, tx)
		}
		for _, opt := range []kannuki.CallOption{kannuki.Timeout(0), kannuki.NoTimeout()} {
			err := kannuki.LockTx(ctx, l.Locker, tx, l.name(end))
			if !errors.Is(err, store.ErrInvalidArgument) || !errors.Is(err, pgx.ErrTxClosed) {
				t.Errorf("after %s (%v): got %v, want ErrInvalidArgument and pgx.ErrTxClosed", end, opt, err)
			}
		}
	}

	// COMMIT sent by hand: pgx still thinks the transaction is open.
	obs := newObserver(t)
	name := l.name("by hand")
	k := l.key(name)
	c, err := pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Release()
	tx, err := c.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "COMMIT"); err != nil {
		t.Fatal(err)
	}
	err = kannuki.LockTx(ctx, l.Locker, tx, name, kannuki.Timeout(0))
	if !errors.Is(err, store.ErrInvalidArgument) {
		t.Errorf("try outside a transaction block: got %v, want ErrInvalidArgument", err)
	}
	// The wait path (the key held elsewhere, so the try is refused).
	holder := begin(t, pool)
	lockTx(t, l, holder, name)
	err = kannuki.LockTx(ctx, l.Locker, tx, name, kannuki.Timeout(hangGuard))
	if !errors.Is(err, store.ErrInvalidArgument) {
		t.Errorf("wait outside a transaction block: got %v, want ErrInvalidArgument", err)
	}
	if h := obs.holders(k); len(h) != 1 || h[0] != txPID(holder) {
		t.Errorf("holders %v, want only %d", h, txPID(holder))
	}
	_ = tx.Rollback(ctx)

	// An aborted transaction.
	tx = begin(t, pool)
	if _, err := tx.Exec(ctx, "SELECT 1/0"); err == nil {
		t.Fatal("division by zero succeeded")
	}
	if err := kannuki.LockTx(ctx, l.Locker, tx, l.name("aborted"), kannuki.Timeout(0)); !errors.Is(err, store.ErrInvalidArgument) {
		t.Errorf("aborted transaction: got %v, want ErrInvalidArgument", err)
	}
	if err := b.AcquireTx(ctx, nil, k, excl(0)); !errors.Is(err, store.ErrInvalidArgument) {
		t.Errorf("nil tx: got %v, want ErrInvalidArgument", err)
	}
}

// TestTxShared: shared transaction locks are held by several transactions
// at once and keep an exclusive one out until all have ended; two-int4
// keys work the same.
func TestTxShared(t *testing.T) {
	pool := newPool(t, 6)
	b := New(pool, Options{})
	obs := newObserver(t)
	ctx, cancel := guardCtx()
	defer cancel()
	bigint := newKey(t, "k")
	pair, err := keys.Raw{}.Derive("", fmt.Sprintf("%d,%d", int32(bigint.ID), int32(bigint.ID>>32)))
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []store.Key{bigint, pair} {
		r1, r2 := begin(t, pool), begin(t, pool)
		for _, tx := range []pgx.Tx{r1, r2} {
			if err := b.AcquireTx(ctx, tx, k, shared(0)); err != nil {
				t.Fatalf("shared %+v: %v", k, err)
			}
		}
		rows := obs.rows(k)
		if len(rows) != 2 || rows[0].Mode != "ShareLock" || rows[1].Mode != "ShareLock" {
			t.Fatalf("pg_locks %+v, want two ShareLock holders", rows)
		}
		w := begin(t, pool)
		notAcquired(t, b.AcquireTx(ctx, w, k, excl(0)))
		notAcquired(t, b.AcquireTx(ctx, w, k, excl(50*time.Millisecond)))
		usable(t, w)
		commit(t, r1)
		notAcquired(t, b.AcquireTx(ctx, w, k, excl(0)))
		done := make(chan error, 1)
		go func() { done <- b.AcquireTx(ctx, w, k, excl(store.WaitForever)) }()
		obs.waitWaiters(k, 1)
		rollback(t, r2)
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		if rows := obs.rows(k); len(rows) != 1 || rows[0].Mode != "ExclusiveLock" || rows[0].PID != txPID(w) {
			t.Fatalf("pg_locks %+v, want the exclusive holder %d", rows, txPID(w))
		}
		// A shared request waits for the exclusive holder.
		r3 := begin(t, pool)
		notAcquired(t, b.AcquireTx(ctx, r3, k, shared(0)))
		commit(t, w)
		if err := b.AcquireTx(ctx, r3, k, shared(0)); err != nil {
			t.Fatal(err)
		}
		commit(t, r3)
	}
}

// TestInTx: commit on nil, rollback on an error and on a panic (which
// propagates), and no call of fn when the lock is not granted.
func TestInTx(t *testing.T) {
	pool := newPool(t, 4)
	l := newTxLocker(t, New(pool, Options{}))
	obs := newObserver(t)
	table := sequenceTable(t, pool)
	ctx, cancel := guardCtx()
	defer cancel()
	name := l.name("k")
	k := l.key(name)
	count := func() int {
		var n int
		if err := pool.QueryRow(ctx, "SELECT count(*) FROM "+table).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	insert := func(ctx context.Context, tx pgx.Tx) error {
		if h := obs.holders(k); len(h) != 1 || h[0] != txPID(tx) {
			t.Errorf("holders in fn %v, want %d", h, txPID(tx))
		}
		_, err := tx.Exec(ctx, "INSERT INTO "+table+" VALUES (1)")
		return err
	}

	if err := kannuki.InTx(ctx, l.Locker, name, insert); err != nil {
		t.Fatal(err)
	}
	if n := count(); n != 1 {
		t.Fatalf("%d rows after a commit, want 1", n)
	}

	errBoom := errors.New("boom")
	err := kannuki.InTx(ctx, l.Locker, name, func(ctx context.Context, tx pgx.Tx) error {
		if err := insert(ctx, tx); err != nil {
			return err
		}
		return errBoom
	})
	if !errors.Is(err, errBoom) {
		t.Fatalf("got %v, want fn's error", err)
	}

	func() {
		defer func() {
			if r := recover(); r != "panic in fn" {
				t.Fatalf("recovered %v, want fn's panic", r)
			}
		}()
		_ = kannuki.InTx(ctx, l.Locker, name, func(ctx context.Context, tx pgx.Tx) error {
			if err := insert(ctx, tx); err != nil {
				return err
			}
			panic("panic in fn")
		})
		t.Fatal("InTx returned after a panic")
	}()
	if n := count(); n != 1 {
		t.Fatalf("%d rows after an error and a panic, want 1 (both rolled back)", n)
	}
	if rows := obs.rows(k); len(rows) != 0 {
		t.Fatalf("pg_locks after the panic: %+v", rows)
	}

	// Not granted: fn does not run, the error matches ErrNotAcquired.
	holder := begin(t, pool)
	lockTx(t, l, holder, name)
	for _, opt := range []kannuki.CallOption{kannuki.Timeout(0), kannuki.Timeout(50 * time.Millisecond)} {
		ran := false
		err = kannuki.InTx(ctx, l.Locker, name, func(context.Context, pgx.Tx) error { ran = true; return nil }, opt)
		notAcquired(t, err)
		if ran {
			t.Fatal("fn ran without the lock")
		}
	}
	var na *kannuki.NotAcquiredError
	if !errors.As(err, &na) || na.Reason != kannuki.ReasonTimeout {
		t.Fatalf("got %v, want a NotAcquiredError with reason timeout", err)
	}
	rollback(t, holder)
	poolHoldsNone(t, pool)
	if st := pool.Stat(); st.AcquiredConns() != 0 {
		t.Fatalf("%d connections still acquired", st.AcquiredConns())
	}
}

// TestRunTxCancel: a cancellation while RunTx waits returns ctx's error
// without running fn, and the connection goes back to the pool clean.
func TestRunTxCancel(t *testing.T) {
	pool := newPool(t, 4)
	b := New(pool, Options{})
	obs := newObserver(t)
	k := newKey(t, "k")
	holder := begin(t, pool)
	if err := b.AcquireTx(context.Background(), holder, k, excl(0)); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- b.RunTx(ctx, k, excl(store.WaitForever), func(context.Context, pgx.Tx) error {
			return errors.New("fn ran without the lock")
		})
	}()
	obs.waitWaiters(k, 1)
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v, want context.Canceled", err)
	}
	rollback(t, holder)
	poolHoldsNone(t, pool)
}

// TestTxOddKeyText: the key text goes only into a comment, made safe: an
// attempt to end the comment, and bytes that are not UTF-8, change nothing.
func TestTxOddKeyText(t *testing.T) {
	pool := newPool(t, 4)
	b := New(pool, Options{})
	obs := newObserver(t)
	ctx, cancel := guardCtx()
	defer cancel()
	k := newKey(t, "k")
	k.String = "x */; SELECT pg_advisory_unlock_all(); /* \xff\xfe " + k.String
	holder := begin(t, pool)
	if err := b.AcquireTx(ctx, holder, k, excl(0)); err != nil {
		t.Fatal(err)
	}
	tx := begin(t, pool)
	notAcquired(t, b.AcquireTx(ctx, tx, k, excl(20*time.Millisecond)))
	usable(t, tx)
	if h := obs.holders(k); len(h) != 1 || h[0] != txPID(holder) {
		t.Fatalf("holders %v, want %d", h, txPID(holder))
	}
}

// TestTxCancelAtRandom: cancellations at random moments while the lock
// changes hands. Whatever happens, AcquireTx returns nil exactly when the
// transaction holds the lock, and the transaction stays usable.
func TestTxCancelAtRandom(t *testing.T) {
	pool := newPool(t, 4)
	b := New(pool, Options{})
	obs := newObserver(t)
	var granted, canceled int
	for i := range 40 {
		k := newKey(t, fmt.Sprint(i))
		holder := begin(t, pool)
		if err := b.AcquireTx(context.Background(), holder, k, excl(0)); err != nil {
			t.Fatal(err)
		}
		tx := begin(t, pool)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- b.AcquireTx(ctx, tx, k, excl(store.WaitForever)) }()
		obs.waitWaiters(k, 1)
		pause := time.Duration(mrand.IntN(3000)) * time.Microsecond
		go func() { time.Sleep(pause); cancel() }()
		time.Sleep(time.Duration(mrand.IntN(3000)) * time.Microsecond)
		commit(t, holder)
		err := <-done
		cancel()
		holds := slices.Contains(obs.holders(k), txPID(tx))
		switch {
		case err == nil && !holds:
			t.Fatalf("trial %d: nil, but the transaction does not hold the lock", i)
		case err != nil && holds:
			t.Fatalf("trial %d: %v, but the transaction holds the lock", i, err)
		case err != nil && !errors.Is(err, context.Canceled):
			t.Fatalf("trial %d: %v", i, err)
		case err == nil:
			granted++
		default:
			canceled++
		}
		usable(t, tx)
		rollback(t, tx)
	}
	t.Logf("%d granted, %d canceled", granted, canceled)
	poolHoldsNone(t, pool)
}

// TestInTxOptions: kannuki.TxOptions reach the transaction InTx opens
// (isolation level and access mode, as the server reports them inside it),
// by value or by pointer, and options of another type are refused before
// anything runs.
func TestInTxOptions(t *testing.T) {
	pool := newPool(t, 4)
	l := newTxLocker(t, New(pool, Options{}))
	ctx, cancel := guardCtx()
	defer cancel()
	name := l.name("opts")
	want := pgx.TxOptions{IsoLevel: pgx.Serializable, AccessMode: pgx.ReadOnly}
	for _, opts := range []any{want, &want} {
		err := kannuki.InTx(ctx, l.Locker, name, func(ctx context.Context, tx pgx.Tx) error {
			var iso, ro string
			if err := tx.QueryRow(ctx, "SELECT current_setting('transaction_isolation'), current_setting('transaction_read_only')").Scan(&iso, &ro); err != nil {
				return err
			}
			if iso != "serializable" || ro != "on" {
				t.Errorf("inside InTx with %T: isolation %q, read only %q; want serializable, on", opts, iso, ro)
			}
			return nil
		}, kannuki.TxOptions(opts))
		if err != nil {
			t.Fatalf("InTx with TxOptions %T: %v", opts, err)
		}
	}
	err := kannuki.InTx(ctx, l.Locker, name, func(context.Context, pgx.Tx) error {
		t.Error("fn ran with options of the wrong type")
		return nil
	}, kannuki.TxOptions(pgx.Serializable))
	if !errors.Is(err, store.ErrInvalidArgument) {
		t.Fatalf("InTx with a pgx.TxIsoLevel as TxOptions: %v, want ErrInvalidArgument", err)
	}
}
