package pgsql

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kannuki-go/kannuki/keys"
	"github.com/kannuki-go/kannuki/store"

	"github.com/kannuki-go/kannuki"
	"github.com/kannuki-go/kannuki/internal/testdb"
	"github.com/kannuki-go/kannuki/kannukipg"
)

// Transaction-scoped locks (kannuki.LockTx, kannuki.InTx) on *sql.Tx, for
// both drivers, directly and through PgBouncer in transaction mode.

const txGuard = 30 * time.Second // hang guard only, never a timing assertion

// txLocker is a Locker on a kannukipg Backend whose key names are unique to
// the test.
type txLocker struct {
	*kannuki.Locker
	b      *kannukipg.Backend
	db     *sql.DB
	prefix string
}

func newTxLocker(t testing.TB, db *sql.DB) txLocker {
	t.Helper()
	b := kannukipg.New(db, kannukipg.Options{})
	k := uniqueKey(t)
	return txLocker{Locker: kannuki.New(b, kannuki.Options{KeyPrefix: "kannukipg-tx-it"}), b: b, db: db, prefix: k.String + "/"}
}

func (l txLocker) name(what string) string { return l.prefix + what }

func (l txLocker) key(t testing.TB, name string) store.Key {
	t.Helper()
	k, err := l.Key(name)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func txBegin(t testing.TB, db *sql.DB) *sql.Tx {
	t.Helper()
	tx, err := db.BeginTx(ctxT(t, txGuard), nil)
	if err != nil {
		t.Fatalf("begin: %v", err)
	}
	t.Cleanup(func() { _ = tx.Rollback() })
	return tx
}

func txCommit(t testing.TB, tx *sql.Tx) {
	t.Helper()
	if err := tx.Commit(); err != nil {
		t.Fatalf("commit: %v", err)
	}
}

func txRollback(t testing.TB, tx *sql.Tx) {
	t.Helper()
	if err := tx.Rollback(); err != nil {
		t.Fatalf("rollback: %v", err)
	}
}

func txLock(t testing.TB, l txLocker, tx *sql.Tx, name string, opts ...kannuki.CallOption) {
	t.Helper()
	if err := kannuki.LockTx(ctxT(t, txGuard), l.Locker, tx, name, opts...); err != nil {
		t.Fatalf("LockTx(%q): %v", name, err)
	}
}

func txPID(t testing.TB, tx *sql.Tx) int64 {
	t.Helper()
	var pid int64
	if err := tx.QueryRowContext(ctxT(t, txGuard), "SELECT pg_backend_pid()").Scan(&pid); err != nil {
		t.Fatalf("pg_backend_pid: %v", err)
	}
	return pid
}

func txLockTimeout(t testing.TB, tx *sql.Tx) string {
	t.Helper()
	var s string
	if err := tx.QueryRowContext(ctxT(t, txGuard), "SHOW lock_timeout").Scan(&s); err != nil {
		t.Fatalf("SHOW lock_timeout: %v", err)
	}
	return s
}

// txUsable fails unless tx still runs statements (it is not aborted).
func txUsable(t testing.TB, tx *sql.Tx) {
	t.Helper()
	var n int
	if err := tx.QueryRowContext(ctxT(t, txGuard), "SELECT 41 + 1").Scan(&n); err != nil || n != 42 {
		t.Fatalf("transaction not usable: %v (%d)", err, n)
	}
}

func notAcquired(t testing.TB, err error) {
	t.Helper()
	if !errors.Is(err, kannuki.ErrNotAcquired) {
		t.Fatalf("got %v, want an error matching ErrNotAcquired", err)
	}
}

// waitWaiting waits until someone waits for k.
func waitWaiting(t testing.TB, obs *observer, k store.Key) {
	t.Helper()
	eventually(t, txGuard, "a waiter", func() bool { return obs.waiting(t, k) > 0 })
}

// seqTable creates a table of numbers with no unique constraint, dropped at
// the end of t.
func seqTable(t testing.TB, db *sql.DB) string {
	t.Helper()
	var b [6]byte
	for i := range b {
		b[i] = "abcdefghijklmnopqrstuvwxyz"[rand.IntN(26)]
	}
	table := "kannuki_pg_tx_seq_" + string(b[:])
	if _, err := db.ExecContext(ctxT(t, txGuard), "CREATE TABLE "+table+" (n int NOT NULL)"); err != nil {
		t.Fatalf("create table: %v", err)
	}
	t.Cleanup(func() { _, _ = db.ExecContext(context.Background(), "DROP TABLE IF EXISTS "+table) })
	return table
}

// txSequence hands out workers×each numbers from concurrent transactions,
// half through kannuki.InTx and half through the caller's own transaction
// and kannuki.LockTx, and checks for exactly 1..workers×each and for never
// two holders at once.
func txSequence(t *testing.T, db *sql.DB, workers, each int, opts ...kannuki.CallOption) {
	l := newTxLocker(t, db)
	table := seqTable(t, db)
	name := l.name("sequence")
	var inside, most atomic.Int32
	body := func(ctx context.Context, tx *sql.Tx) error {
		n := inside.Add(1)
		defer inside.Add(-1)
		for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
		}
		var last int
		if err := tx.QueryRowContext(ctx, "SELECT COALESCE(max(n), 0) FROM "+table).Scan(&last); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, "INSERT INTO "+table+" (n) VALUES ($1)", last+1)
		return err
	}
	ctx := ctxT(t, txGuard)
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
						tx, err := db.BeginTx(ctx, nil)
						if err != nil {
							return err
						}
						defer func() { _ = tx.Rollback() }()
						if err := kannuki.LockTx(ctx, l.Locker, tx, name, opts...); err != nil {
							return err
						}
						if err := body(ctx, tx); err != nil {
							return err
						}
						return tx.Commit()
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
	if m := most.Load(); m != 1 {
		t.Errorf("%d holders at once", m)
	}
	rows, err := db.QueryContext(ctx, "SELECT n FROM "+table+" ORDER BY n")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var got []int
	for rows.Next() {
		var n int
		if err := rows.Scan(&n); err != nil {
			t.Fatal(err)
		}
		got = append(got, n)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	want := make([]int, workers*each)
	for i := range want {
		want[i] = i + 1
	}
	if !slices.Equal(got, want) {
		t.Fatalf("numbers: %d rows, want exactly 1..%d; got %v", len(got), len(want), got)
	}
}

// TestTxSequence: 8 goroutines × 50 transactions hand out exactly 1..400.
func TestTxSequence(t *testing.T) {
	forEachDriver(t, func(t *testing.T, d driver) {
		txSequence(t, openDB(t, d, 12), 8, 50)
	})
}

// openBouncer opens a pool through PgBouncer in transaction pooling mode
// with the driver's DSN options.
func openBouncer(t testing.TB, d driver, params string, maxOpen int) *sql.DB {
	t.Helper()
	db, err := sql.Open(d.sql, testdb.PgBouncerDSN()+params)
	if err != nil {
		t.Fatal(err)
	}
	db.SetMaxOpenConns(maxOpen)
	db.SetMaxIdleConns(maxOpen)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		testdb.Unavailable(t, "PgBouncer", err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// TestTxSequencePgBouncer: the same through PgBouncer in transaction mode,
// where consecutive transactions of one client run on different server
// sessions. pgx/stdlib needs a query exec mode without named prepared
// statements (PgBouncer 1.18 does not carry them across server sessions).
// lib/pq's transactions work as they are (its prepare-then-run of a
// statement with parameters stays on the transaction's server session),
// but see TestPgBouncerDriverModes for statements outside transactions.
func TestTxSequencePgBouncer(t *testing.T) {
	for _, c := range []struct {
		d      driver
		params string
		each   int
	}{
		{drivers[0], "&default_query_exec_mode=simple_protocol", 50},
		{drivers[0], "&default_query_exec_mode=exec", 25},
		{drivers[1], "", 50},
		{drivers[1], "&binary_parameters=yes", 25},
	} {
		t.Run(c.d.name+c.params, func(t *testing.T) {
			txSequence(t, openBouncer(t, c.d, c.params, 12), 8, c.each, kannuki.Timeout(txGuard))
		})
	}
}

// TestTxReleasedAtEnd: the transaction's session holds the lock until
// commit or rollback; a third session sees it go.
func TestTxReleasedAtEnd(t *testing.T) {
	forEachDriver(t, func(t *testing.T, d driver) {
		db := openDB(t, d, 4)
		l := newTxLocker(t, db)
		obs := newObserver(t)
		for _, end := range []string{"commit", "rollback"} {
			name := l.name(end)
			k := l.key(t, name)
			tx := txBegin(t, db)
			txLock(t, l, tx, name)
			if pids := obs.holderPIDs(t, k); len(pids) != 1 || pids[0] != txPID(t, tx) {
				t.Fatalf("%s: holders %v, want the transaction's session", end, pids)
			}
			txLock(t, l, tx, name, kannuki.Timeout(0)) // again: PostgreSQL counts it
			if end == "commit" {
				txCommit(t, tx)
			} else {
				txRollback(t, tx)
			}
			if n := obs.held(t, k); n != 0 {
				t.Fatalf("after %s: %d holders", end, n)
			}
		}
		assertPoolClean(t, db)
	})
}

// TestTxTryAndTimeout: a refused try and an expired wait leave the
// transaction usable, without the lock and with lock_timeout as it was; a
// wait that is granted restores lock_timeout too and leaves no savepoint.
func TestTxTryAndTimeout(t *testing.T) {
	forEachDriver(t, func(t *testing.T, d driver) {
		db := openDB(t, d, 6)
		l := newTxLocker(t, db)
		obs := newObserver(t)
		for _, setting := range []string{"", "7s"} {
			name := l.name("k" + setting)
			k := l.key(t, name)
			holder := txBegin(t, db)
			txLock(t, l, holder, name)
			tx := txBegin(t, db)
			ctx := ctxT(t, txGuard)
			if setting != "" {
				if _, err := tx.ExecContext(ctx, "SET LOCAL lock_timeout = '"+setting+"'"); err != nil {
					t.Fatal(err)
				}
			}
			before := txLockTimeout(t, tx)

			notAcquired(t, kannuki.LockTx(ctx, l.Locker, tx, name, kannuki.Timeout(0)))
			txUsable(t, tx)
			const wait = 100 * time.Millisecond
			start := time.Now()
			err := kannuki.LockTx(ctx, l.Locker, tx, name, kannuki.Timeout(wait))
			if took := time.Since(start); took < wait {
				t.Errorf("timed wait gave up after %s, before its %s", took, wait)
			}
			notAcquired(t, err)
			if errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("timeout reported as %v", err)
			}
			txUsable(t, tx)
			if got := txLockTimeout(t, tx); got != before {
				t.Fatalf("lock_timeout after a timed-out wait: %q, want %q", got, before)
			}
			if n := obs.held(t, k); n != 1 {
				t.Fatalf("%d holders, want the holder only", n)
			}

			done := make(chan error, 1)
			go func() { done <- kannuki.LockTx(ctx, l.Locker, tx, name, kannuki.Timeout(txGuard)) }()
			waitWaiting(t, obs, k)
			txCommit(t, holder)
			if err := <-done; err != nil {
				t.Fatalf("wait: %v", err)
			}
			txUsable(t, tx)
			if got := txLockTimeout(t, tx); got != before {
				t.Fatalf("lock_timeout after a granted wait: %q, want %q", got, before)
			}
			if pids := obs.holderPIDs(t, k); len(pids) != 1 || pids[0] != txPID(t, tx) {
				t.Fatalf("holders %v, want the waiter", pids)
			}
			if _, err := tx.ExecContext(ctx, "ROLLBACK TO SAVEPOINT kannuki_xact_lock"); err == nil {
				t.Fatal("the wait left its savepoint open")
			}
			_ = tx.Rollback()
		}
		assertPoolClean(t, db)
	})
}

// TestTxWaitForeverIgnoresLockTimeout: a wait without timeout is not cut by
// the caller's lock_timeout, which is in force again afterwards.
func TestTxWaitForeverIgnoresLockTimeout(t *testing.T) {
	forEachDriver(t, func(t *testing.T, d driver) {
		db := openDB(t, d, 6)
		l := newTxLocker(t, db)
		obs := newObserver(t)
		name := l.name("k")
		k := l.key(t, name)
		holder := txBegin(t, db)
		txLock(t, l, holder, name)
		tx := txBegin(t, db)
		if _, err := tx.ExecContext(ctxT(t, txGuard), "SET LOCAL lock_timeout = '10ms'"); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background()) // no deadline: it would become lock_timeout
		defer cancel()
		done := make(chan error, 1)
		go func() { done <- kannuki.LockTx(ctx, l.Locker, tx, name, kannuki.NoTimeout()) }()
		waitWaiting(t, obs, k)
		time.Sleep(50 * time.Millisecond) // well past the caller's 10ms
		select {
		case err := <-done:
			t.Fatalf("wait forever ended early: %v", err)
		default:
		}
		txCommit(t, holder)
		select {
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(txGuard):
			t.Fatal("still waiting after the holder committed")
		}
		if got := txLockTimeout(t, tx); got != "10ms" {
			t.Fatalf("lock_timeout %q, want 10ms", got)
		}
	})
}

// TestTxDeadlineAndCancel: ctx's deadline and ctx's cancellation end a wait
// with ctx's error; the transaction stays usable (the cancellation goes
// through pg_cancel_backend from a spare connection, not through the
// driver, which would close the connection) and is not left queued.
func TestTxDeadlineAndCancel(t *testing.T) {
	forEachDriver(t, func(t *testing.T, d driver) {
		db := openDB(t, d, 6)
		l := newTxLocker(t, db)
		obs := newObserver(t)
		name := l.name("k")
		k := l.key(t, name)
		holder := txBegin(t, db)
		txLock(t, l, holder, name)
		for _, c := range []struct {
			name string
			ctx  func() (context.Context, context.CancelFunc)
			want error
		}{
			{"deadline", func() (context.Context, context.CancelFunc) {
				return context.WithTimeout(context.Background(), 150*time.Millisecond)
			}, context.DeadlineExceeded},
			{"cancel", func() (context.Context, context.CancelFunc) {
				return context.WithCancel(context.Background())
			}, context.Canceled},
		} {
			tx := txBegin(t, db)
			before := txLockTimeout(t, tx)
			pid := txPID(t, tx)
			ctx, cancel := c.ctx()
			done := make(chan error, 1)
			go func() { done <- kannuki.LockTx(ctx, l.Locker, tx, name) }()
			if c.want == context.Canceled {
				waitWaiting(t, obs, k)
				cancel()
			}
			var err error
			select {
			case err = <-done:
			case <-time.After(txGuard):
				t.Fatalf("%s: LockTx did not return", c.name)
			}
			cancel()
			if !errors.Is(err, c.want) {
				t.Fatalf("%s: got %v, want %v", c.name, err, c.want)
			}
			txUsable(t, tx)
			if got := txLockTimeout(t, tx); got != before {
				t.Fatalf("%s: lock_timeout %q, want %q", c.name, got, before)
			}
			if got := txPID(t, tx); got != pid {
				t.Fatalf("%s: the session changed (%d, was %d)", c.name, got, pid)
			}
			if n := obs.waiting(t, k); n != 0 {
				t.Fatalf("%s: %d still waiting", c.name, n)
			}
			txRollback(t, tx)
		}
	})
}

// TestTxCancelRacingGrant: cancellations at random moments while the lock
// changes hands. Whatever happens, LockTx returns nil exactly when the
// transaction holds the lock, and the transaction stays usable.
func TestTxCancelRacingGrant(t *testing.T) {
	forEachDriver(t, func(t *testing.T, d driver) {
		db := openDB(t, d, 6)
		l := newTxLocker(t, db)
		obs := newObserver(t)
		n := trials(40)
		var granted, canceled int
		for i := range n {
			name := l.name(fmt.Sprint(i))
			k := l.key(t, name)
			holder := txBegin(t, db)
			txLock(t, l, holder, name)
			tx := txBegin(t, db)
			pid := txPID(t, tx)
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- kannuki.LockTx(ctx, l.Locker, tx, name) }()
			waitWaiting(t, obs, k)
			pause := time.Duration(rand.IntN(3000)) * time.Microsecond
			go func() { time.Sleep(pause); cancel() }()
			time.Sleep(time.Duration(rand.IntN(3000)) * time.Microsecond)
			txCommit(t, holder)
			err := <-done
			cancel()
			holds := slices.Contains(obs.holderPIDs(t, k), pid)
			switch {
			case err == nil && !holds:
				t.Fatalf("trial %d: LockTx returned nil, but the transaction does not hold the lock", i)
			case err != nil && holds:
				t.Fatalf("trial %d: LockTx returned %v, but the transaction holds the lock", i, err)
			case err != nil && !errors.Is(err, context.Canceled):
				t.Fatalf("trial %d: %v", i, err)
			case err == nil:
				granted++
			default:
				canceled++
			}
			txUsable(t, tx)
			txRollback(t, tx)
		}
		t.Logf("%d granted, %d canceled", granted, canceled)
		assertPoolClean(t, db)
	})
}

// TestTxCancelWithoutSpareConnection: with no connection free to send
// pg_cancel_backend, the driver's own cancellation closes the transaction's
// connection; LockTx says so, and the session, which may not keep anything,
// goes away.
func TestTxCancelWithoutSpareConnection(t *testing.T) {
	forEachDriver(t, func(t *testing.T, d driver) {
		db := openDB(t, d, 1)
		l := newTxLocker(t, db)
		obs := newObserver(t)
		hdb := openDB(t, d, 1)
		name := l.name("k")
		k := l.key(t, name)
		holder := txBegin(t, hdb)
		txLock(t, l, holder, name)
		tx := txBegin(t, db) // the pool's only connection
		pid := txPID(t, tx)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- kannuki.LockTx(ctx, l.Locker, tx, name) }()
		waitWaiting(t, obs, k)
		cancel()
		err := <-done
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("got %v, want context.Canceled", err)
		}
		txCommit(t, holder)
		eventually(t, txGuard, "the closed session to go", func() bool {
			return !slices.Contains(obs.holderPIDs(t, k), pid) && obs.waiting(t, k) == 0
		})
		_ = tx.Rollback()
	})
}

// TestTxDeadlock: two transactions wait for each other's lock: one gets
// ErrDeadlock, its transaction still usable; once it rolls back the other
// gets its lock.
func TestTxDeadlock(t *testing.T) {
	forEachDriver(t, func(t *testing.T, d driver) {
		db := openDB(t, d, 6)
		l := newTxLocker(t, db)
		obs := newObserver(t)
		n1, n2 := l.name("one"), l.name("two")
		a, b := txBegin(t, db), txBegin(t, db)
		txLock(t, l, a, n1)
		txLock(t, l, b, n2)
		before := txLockTimeout(t, a)
		ctx := ctxT(t, txGuard)
		type result struct {
			tx  *sql.Tx
			err error
		}
		results := make(chan result, 2)
		go func() { results <- result{a, kannuki.LockTx(ctx, l.Locker, a, n2)} }()
		waitWaiting(t, obs, l.key(t, n2))
		go func() { results <- result{b, kannuki.LockTx(ctx, l.Locker, b, n1)} }()
		victim := <-results
		if !errors.Is(victim.err, kannuki.ErrDeadlock) {
			t.Fatalf("got %v, want ErrDeadlock", victim.err)
		}
		txUsable(t, victim.tx)
		if got := txLockTimeout(t, victim.tx); got != before {
			t.Fatalf("victim's lock_timeout %q, want %q", got, before)
		}
		select {
		case r := <-results:
			t.Fatalf("the other transaction returned before the victim ended: %v", r.err)
		default:
		}
		txRollback(t, victim.tx)
		if r := <-results; r.err != nil {
			t.Fatalf("survivor: %v", r.err)
		} else {
			txCommit(t, r.tx)
		}
	})
}

// TestTxNotOpen: a finished transaction, one ended by hand, or an aborted
// one is an error, never a silent lock.
func TestTxNotOpen(t *testing.T) {
	forEachDriver(t, func(t *testing.T, d driver) {
		db := openDB(t, d, 6)
		l := newTxLocker(t, db)
		obs := newObserver(t)
		ctx := ctxT(t, txGuard)
		for _, end := range []string{"commit", "rollback"} {
			tx := txBegin(t, db)
			if end == "commit" {
				txCommit(t, tx)
			} else {
				txRollback(t, tx)
			}
			for _, opt := range []kannuki.CallOption{kannuki.Timeout(0), kannuki.NoTimeout()} {
				err := kannuki.LockTx(ctx, l.Locker, tx, l.name(end), opt)
				if !errors.Is(err, kannuki.ErrInvalidArgument) || !errors.Is(err, sql.ErrTxDone) {
					t.Errorf("after %s: got %v, want ErrInvalidArgument and sql.ErrTxDone", end, err)
				}
			}
		}

		// COMMIT by hand: database/sql still thinks the transaction is open.
		name := l.name("by hand")
		k := l.key(t, name)
		tx := txBegin(t, db)
		if _, err := tx.ExecContext(ctx, "COMMIT"); err != nil {
			t.Fatal(err)
		}
		if err := kannuki.LockTx(ctx, l.Locker, tx, name, kannuki.Timeout(0)); !errors.Is(err, kannuki.ErrInvalidArgument) {
			t.Errorf("try outside a transaction block: got %v, want ErrInvalidArgument", err)
		}
		if n := obs.held(t, k); n != 0 {
			t.Errorf("%d holders after a refused lock outside a transaction", n)
		}
		_ = tx.Rollback()

		// An aborted transaction.
		tx = txBegin(t, db)
		if _, err := tx.ExecContext(ctx, "SELECT 1/0"); err == nil {
			t.Fatal("division by zero succeeded")
		}
		if err := kannuki.LockTx(ctx, l.Locker, tx, l.name("aborted"), kannuki.Timeout(0)); !errors.Is(err, kannuki.ErrInvalidArgument) {
			t.Errorf("aborted transaction: got %v, want ErrInvalidArgument", err)
		}
		if err := l.b.AcquireTx(ctx, nil, k, store.Request{}); !errors.Is(err, kannuki.ErrInvalidArgument) {
			t.Errorf("nil tx: got %v", err)
		}
	})
}

// TestTxShared: shared transaction locks coexist and keep an exclusive one
// out until all their transactions end; two-int4 keys too.
func TestTxShared(t *testing.T) {
	forEachDriver(t, func(t *testing.T, d driver) {
		db := openDB(t, d, 8)
		b := kannukipg.New(db, kannukipg.Options{})
		obs := newObserver(t)
		ctx := ctxT(t, txGuard)
		bigint := uniqueKey(t)
		pair, err := keys.Raw{}.Derive("", fmt.Sprintf("%d,%d", int32(bigint.ID), int32(bigint.ID>>32)))
		if err != nil {
			t.Fatal(err)
		}
		shared := store.Request{Mode: store.ModeShared}
		excl := func(w time.Duration) store.Request { return store.Request{Mode: store.ModeExclusive, Wait: w} }
		for _, k := range []store.Key{bigint, pair} {
			r1, r2 := txBegin(t, db), txBegin(t, db)
			for _, tx := range []*sql.Tx{r1, r2} {
				if err := b.AcquireTx(ctx, tx, k, shared); err != nil {
					t.Fatal(err)
				}
			}
			if n := obs.held(t, k); n != 2 {
				t.Fatalf("%d holders, want 2 shared", n)
			}
			w := txBegin(t, db)
			notAcquired(t, b.AcquireTx(ctx, w, k, excl(0)))
			notAcquired(t, b.AcquireTx(ctx, w, k, excl(50*time.Millisecond)))
			txUsable(t, w)
			txCommit(t, r1)
			done := make(chan error, 1)
			go func() { done <- b.AcquireTx(ctx, w, k, excl(store.WaitForever)) }()
			waitWaiting(t, obs, k)
			txRollback(t, r2)
			if err := <-done; err != nil {
				t.Fatal(err)
			}
			r3 := txBegin(t, db)
			notAcquired(t, b.AcquireTx(ctx, r3, k, shared))
			txCommit(t, w)
			if err := b.AcquireTx(ctx, r3, k, shared); err != nil {
				t.Fatal(err)
			}
			txCommit(t, r3)
		}
	})
}

// TestInTx: commit on nil, rollback on an error and on a panic (which
// propagates), and fn not run when the lock is not granted.
func TestInTx(t *testing.T) {
	forEachDriver(t, func(t *testing.T, d driver) {
		db := openDB(t, d, 6)
		l := newTxLocker(t, db)
		obs := newObserver(t)
		table := seqTable(t, db)
		ctx := ctxT(t, txGuard)
		name := l.name("k")
		k := l.key(t, name)
		count := func() int {
			var n int
			if err := db.QueryRowContext(ctx, "SELECT count(*) FROM "+table).Scan(&n); err != nil {
				t.Fatal(err)
			}
			return n
		}
		insert := func(ctx context.Context, tx *sql.Tx) error {
			if pids := obs.holderPIDs(t, k); len(pids) != 1 || pids[0] != txPID(t, tx) {
				t.Errorf("holders in fn %v, want the transaction's session", pids)
			}
			_, err := tx.ExecContext(ctx, "INSERT INTO "+table+" VALUES (1)")
			return err
		}
		if err := kannuki.InTx(ctx, l.Locker, name, insert); err != nil {
			t.Fatal(err)
		}
		errBoom := errors.New("boom")
		if err := kannuki.InTx(ctx, l.Locker, name, func(ctx context.Context, tx *sql.Tx) error {
			if err := insert(ctx, tx); err != nil {
				return err
			}
			return errBoom
		}); !errors.Is(err, errBoom) {
			t.Fatalf("got %v, want fn's error", err)
		}
		func() {
			defer func() {
				if r := recover(); r != "panic in fn" {
					t.Fatalf("recovered %v, want fn's panic", r)
				}
			}()
			_ = kannuki.InTx(ctx, l.Locker, name, func(ctx context.Context, tx *sql.Tx) error {
				if err := insert(ctx, tx); err != nil {
					return err
				}
				panic("panic in fn")
			})
		}()
		if n := count(); n != 1 {
			t.Fatalf("%d rows, want 1 (the error and the panic rolled back)", n)
		}
		if n := obs.held(t, k); n != 0 {
			t.Fatalf("%d holders after the panic", n)
		}

		holder := txBegin(t, db)
		txLock(t, l, holder, name)
		for _, opt := range []kannuki.CallOption{kannuki.Timeout(0), kannuki.Timeout(50 * time.Millisecond)} {
			ran := false
			err := kannuki.InTx(ctx, l.Locker, name, func(context.Context, *sql.Tx) error { ran = true; return nil }, opt)
			notAcquired(t, err)
			if ran {
				t.Fatal("fn ran without the lock")
			}
		}
		txRollback(t, holder)

		// A cancellation while InTx waits: ctx's error, fn not run.
		holder = txBegin(t, db)
		txLock(t, l, holder, name)
		cctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() {
			done <- kannuki.InTx(cctx, l.Locker, name, func(context.Context, *sql.Tx) error {
				return errors.New("fn ran without the lock")
			})
		}()
		waitWaiting(t, obs, k)
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Fatalf("got %v, want context.Canceled", err)
		}
		txRollback(t, holder)
		assertPoolClean(t, db)
		if st := db.Stats(); st.InUse != 0 {
			t.Fatalf("%d connections still in use", st.InUse)
		}
	})
}

// TestPgBouncerDriverModes records which driver settings work behind
// PgBouncer 1.18 in transaction mode for statements with parameters outside
// a transaction, from 8 clients at once: pgx/stdlib with simple_protocol or
// exec, and lib/pq with binary_parameters=yes must never fail. pgx's
// default mode (named prepared statements) and lib/pq's default (prepare in
// one round trip, run in the next, possibly on another server session) can
// fail; how often depends on the interleaving, so they are only logged.
func TestPgBouncerDriverModes(t *testing.T) {
	for _, c := range []struct {
		d      driver
		params string
		safe   bool
	}{
		{drivers[0], "&default_query_exec_mode=simple_protocol", true},
		{drivers[0], "&default_query_exec_mode=exec", true},
		{drivers[1], "&binary_parameters=yes", true},
		{drivers[0], "", false},
		{drivers[1], "", false},
	} {
		t.Run(c.d.name+c.params, func(t *testing.T) {
			db := openBouncer(t, c.d, c.params, 8)
			ctx := ctxT(t, txGuard)
			var failures atomic.Int32
			var first atomic.Value
			var wg sync.WaitGroup
			for range 8 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := range 50 {
						var n int
						if err := db.QueryRowContext(ctx, "SELECT $1::int + 1", i).Scan(&n); err != nil {
							failures.Add(1)
							first.CompareAndSwap(nil, err.Error())
						}
					}
				}()
			}
			wg.Wait()
			switch n := failures.Load(); {
			case c.safe && n > 0:
				t.Fatalf("%d of 400 statements failed, first: %v", n, first.Load())
			case !c.safe:
				t.Logf("%d of 400 statements failed (first: %v)", n, first.Load())
			}
		})
	}
}

// TestInTxOptions: kannuki.TxOptions reach the transaction InTx opens
// (isolation level and read-only mode, as the server reports them inside
// it), and options of a type the backend does not take are refused before
// anything runs.
func TestInTxOptions(t *testing.T) {
	forEachDriver(t, func(t *testing.T, d driver) {
		db := openDB(t, d, 4)
		l := newTxLocker(t, db)
		ctx := ctxT(t, txGuard)
		name := l.name("opts")
		opts := kannuki.TxOptions(&sql.TxOptions{Isolation: sql.LevelSerializable, ReadOnly: true})
		err := kannuki.InTx(ctx, l.Locker, name, func(ctx context.Context, tx *sql.Tx) error {
			var iso, ro string
			if err := tx.QueryRowContext(ctx, "SELECT current_setting('transaction_isolation'), current_setting('transaction_read_only')").Scan(&iso, &ro); err != nil {
				return err
			}
			if iso != "serializable" || ro != "on" {
				t.Errorf("inside InTx: isolation %q, read only %q; want serializable, on", iso, ro)
			}
			return nil
		}, opts)
		if err != nil {
			t.Fatalf("InTx with TxOptions: %v", err)
		}
		err = kannuki.InTx(ctx, l.Locker, name, func(context.Context, *sql.Tx) error {
			t.Error("fn ran with options of the wrong type")
			return nil
		}, kannuki.TxOptions(sql.LevelSerializable))
		if !errors.Is(err, kannuki.ErrInvalidArgument) {
			t.Fatalf("InTx with a sql.IsolationLevel as TxOptions: %v, want ErrInvalidArgument", err)
		}
	})
}
