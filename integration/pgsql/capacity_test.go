package pgsql

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/kannuki-go/kannuki"
	"github.com/kannuki-go/kannuki/internal/pgcluster"
	"github.com/kannuki-go/kannuki/kannukipg"
)

// capacityPool is the Locker's pool in TestLockTableFull: more connections
// than the few locks the filled table leaves room for.
const capacityPool = 24

// TestLockTableFull fills the shared lock table of a throwaway cluster
// (max_locks_per_transaction=10): a filler session takes advisory locks
// until the server refuses one (53200), gives a few back, and a Locker
// takes locks until its first refusal. The refused calls (a try, a timed
// wait, a transaction lock) get errors matching kannuki.ErrCapacity that
// name max_locks_per_transaction; their connections stay in the pool; no
// Handle is lost; every lock granted before the refusal is still held, as
// another session sees in pg_locks; and releasing locks lets new ones in.
// Each held kannukipg lock pins a connection, so max_connections would run
// out long before the table does without the filler.
func TestLockTableFull(t *testing.T) {
	forEachDriver(t, func(t *testing.T, d driver) {
		c := pgcluster.Start(t, "max_locks_per_transaction=10", "max_connections=40",
			"max_worker_processes=0", "max_wal_senders=0", "autovacuum=off")
		ctx := ctxT(t, 2*time.Minute)
		db := openCluster(t, d.sql, c.DSN, capacityPool)
		lk := kannuki.New(kannukipg.New(db, kannukipg.Options{}), kannuki.Options{KeyPrefix: "capacity", KeepaliveInterval: 50 * time.Millisecond})

		// Every pooled connection runs the Locker's statements once, so
		// that no first-use lookup needs the table once it is full.
		var warm []*kannuki.Handle
		for i := range capacityPool {
			h, err := lk.Acquire(ctx, fmt.Sprint("warm/", i), kannuki.Timeout(0))
			if err != nil {
				t.Fatal(err)
			}
			warm = append(warm, h)
		}
		for _, h := range warm {
			if err := h.Release(ctx); err != nil {
				t.Fatal(err)
			}
		}
		if n := db.Stats().OpenConnections; n != capacityPool {
			t.Fatalf("%d open connections after the warm-up, want %d", n, capacityPool)
		}

		// The filler: a session of its own that takes pair-form locks (a
		// key space the Locker's bigint keys never share) until refused.
		fillDB := openCluster(t, "pgx", c.DSN, 1)
		filler, err := fillDB.Conn(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer filler.Close()
		n := 0
		for ; ; n++ {
			_, err := filler.ExecContext(ctx, "SELECT pg_advisory_lock(7, $1)", n)
			if err == nil {
				continue
			}
			if !strings.Contains(err.Error(), "53200") {
				t.Fatalf("filler lock %d: %v, want SQLSTATE 53200", n, err)
			}
			break
		}
		const room = 6
		for i := n - room; i < n; i++ {
			if _, err := filler.ExecContext(ctx, "SELECT pg_advisory_unlock(7, $1)", i); err != nil {
				t.Fatal(err)
			}
		}
		t.Logf("the filler held %d locks when the table was full; it gave %d back", n, room)

		// The Locker fills the rest.
		var held []*kannuki.Handle
		var refused error
		for i := 0; i < capacityPool-2; i++ {
			h, err := lk.Acquire(ctx, fmt.Sprint("fill/", i), kannuki.Timeout(0))
			if err != nil {
				refused = err
				break
			}
			held = append(held, h)
		}
		switch {
		case refused == nil:
			t.Fatalf("%d locks granted and no refusal", len(held))
		case len(held) == 0:
			t.Fatalf("the first lock was refused: %v", refused)
		}
		t.Logf("%d locks granted, then: %v", len(held), refused)
		assertCapacity(t, refused, true)
		_, err = lk.Acquire(ctx, "fill/timed", kannuki.Timeout(100*time.Millisecond))
		assertCapacity(t, err, true)
		tx, err := db.BeginTx(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		assertCapacity(t, kannuki.LockTx(ctx, lk, tx, "fill/tx"), false)
		_ = tx.Rollback()
		if n := db.Stats().OpenConnections; n != capacityPool {
			t.Fatalf("%d open connections after the refusals, want %d: a refused connection was destroyed", n, capacityPool)
		}

		// Giving locks back lets new ones in; no Handle was lost.
		for _, h := range held[:2] {
			if err := h.Release(ctx); err != nil {
				t.Fatalf("release: %v", err)
			}
		}
		held = held[2:]
		for i := range 2 {
			h, err := lk.Acquire(ctx, fmt.Sprint("again/", i), kannuki.Timeout(0))
			if err != nil {
				t.Fatalf("a try after two releases: %v", err)
			}
			held = append(held, h)
		}
		for _, h := range held {
			if err := h.Err(); err != nil {
				t.Fatalf("%s lost: %v", h.Key(), err)
			}
		}
		if s := lk.Stats(); s.Lost != 0 {
			t.Fatalf("Stats.Lost = %d", s.Lost)
		}

		// Another session sees every lock held, once the filler made room
		// for its own catalog locks.
		if _, err := filler.ExecContext(ctx, "SELECT pg_advisory_unlock_all()"); err != nil {
			t.Fatal(err)
		}
		obs := openCluster(t, "pgx", c.DSN, 1)
		for _, h := range held {
			k, err := lk.Key(strings.TrimPrefix(h.Key(), "capacity/"))
			if err != nil {
				t.Fatal(err)
			}
			var n int
			if err := obs.QueryRowContext(ctx, "SELECT count(*) FROM pg_locks WHERE "+where(k)+" AND granted").Scan(&n); err != nil {
				t.Fatal(err)
			}
			if n != 1 {
				t.Fatalf("%s: %d holders in pg_locks, want 1", h.Key(), n)
			}
			if err := h.Release(ctx); err != nil {
				t.Fatalf("release %s: %v", h.Key(), err)
			}
		}
	})
}

// assertCapacity checks a refusal for the full lock table.
func assertCapacity(t *testing.T, err error, session bool) {
	t.Helper()
	var na *kannuki.NotAcquiredError
	switch {
	case !errors.Is(err, kannuki.ErrCapacity):
		t.Fatalf("%v: want an error matching ErrCapacity", err)
	case !errors.As(err, &na) || na.Reason != kannuki.ReasonCapacity:
		t.Fatalf("%v: want a *NotAcquiredError with ReasonCapacity", err)
	case !strings.Contains(err.Error(), "max_locks_per_transaction"):
		t.Fatalf("%v: want the setting named", err)
	case session && !strings.Contains(err.Error(), "this Locker holds"):
		t.Fatalf("%v: want the Locker's count", err)
	}
}

// openCluster opens a pool of n connections on a throwaway cluster.
func openCluster(t *testing.T, driverName, dsn string, n int) *sql.DB {
	t.Helper()
	db, err := sql.Open(driverName, dsn)
	if err != nil {
		t.Fatal(err)
	}
	db.SetMaxOpenConns(n)
	db.SetMaxIdleConns(n)
	t.Cleanup(func() { db.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := db.PingContext(ctx); err != nil {
		t.Fatal(err)
	}
	return db
}
