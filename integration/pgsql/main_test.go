// Package pgsql tests kannukipg against a real PostgreSQL through both
// database/sql drivers it supports: pgx/stdlib and lib/pq. Every test runs
// once per driver.
package pgsql

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/kannuki-go/kannuki/keys"
	"github.com/kannuki-go/kannuki/store"

	_ "github.com/jackc/pgx/v5/stdlib" // registers "pgx"
	_ "github.com/lib/pq"              // registers "postgres"
	"go.uber.org/goleak"

	"github.com/kannuki-go/kannuki/internal/pgsql"
	"github.com/kannuki-go/kannuki/internal/testdb"
	"github.com/kannuki-go/kannuki/kannukipg"
)

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) != "" {
		os.Exit(childMain())
	}
	goleak.VerifyTestMain(m)
}

// driver is one database/sql driver under test.
type driver struct {
	name string // subtest name
	sql  string // database/sql driver name
}

var drivers = []driver{
	{"pgx-stdlib", "pgx"},
	{"lib-pq", "postgres"},
}

// forEachDriver runs f as a subtest per driver, the drivers in parallel
// (each test uses keys and pools of its own; the parallel subtests end
// before the next top-level test starts).
func forEachDriver(t *testing.T, f func(t *testing.T, d driver)) {
	t.Helper()
	for _, d := range drivers {
		t.Run(d.name, func(t *testing.T) {
			t.Parallel()
			f(t, d)
		})
	}
}

// forEachDriverSerial runs f as a subtest per driver, one after the other.
func forEachDriverSerial(t *testing.T, f func(t *testing.T, d driver)) {
	t.Helper()
	for _, d := range drivers {
		t.Run(d.name, func(t *testing.T) { f(t, d) })
	}
}

// openDB opens a pool on the test database (maxOpen 0: no limit), closed at
// the end of the test. It skips or fails (KANNUKI_TEST_REQUIRE_DB=1) when
// PostgreSQL is unreachable.
func openDB(t testing.TB, d driver, maxOpen int) *sql.DB {
	t.Helper()
	db, err := sql.Open(d.sql, testdb.PostgresDSN())
	if err != nil {
		t.Fatal(err)
	}
	db.SetMaxOpenConns(maxOpen)
	db.SetMaxIdleConns(max(maxOpen, 4))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		testdb.Unavailable(t, "PostgreSQL", err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// warm opens n connections in db at once and returns them to the pool, so
// that trials measure locking rather than dialing.
func warm(t testing.TB, db *sql.DB, n int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	conns := make([]*sql.Conn, 0, n)
	for range n {
		c, err := db.Conn(ctx)
		if err != nil {
			t.Fatalf("warming the pool: %v", err)
		}
		if err := c.PingContext(ctx); err != nil {
			t.Fatalf("warming the pool: %v", err)
		}
		conns = append(conns, c)
	}
	for _, c := range conns {
		c.Close()
	}
}

// newBackend opens a pool and a Backend on it.
func newBackend(t testing.TB, d driver, maxOpen int) (*kannukipg.Backend, *sql.DB) {
	t.Helper()
	db := openDB(t, d, maxOpen)
	return kannukipg.New(db, kannukipg.Options{}), db
}

// uniqueKey derives a key that no other test or helper uses.
func uniqueKey(t testing.TB, parts ...string) store.Key {
	t.Helper()
	var b [6]byte
	_, _ = rand.Read(b[:])
	name := strings.Join(append([]string{"kannukipg-it", t.Name(), hex.EncodeToString(b[:])}, parts...), "/")
	k, err := keys.Ruby{}.Derive("", name)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// observer is a "third session": a pool of its own (pgx), holding no lock,
// used to look at pg_locks from outside.
type observer struct {
	db *sql.DB
}

func newObserver(t testing.TB) *observer {
	t.Helper()
	db := openDB(t, drivers[0], 4)
	return &observer{db: db}
}

// held counts granted sessions holding k in this database.
func (o *observer) held(t testing.TB, k store.Key) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var n int
	if err := o.db.QueryRowContext(ctx, "SELECT count(*) FROM pg_locks WHERE "+pgsql.Where(k)+" AND granted").Scan(&n); err != nil {
		t.Fatalf("pg_locks: %v", err)
	}
	return n
}

// waiting counts sessions waiting for k.
func (o *observer) waiting(t testing.TB, k store.Key) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var n int
	if err := o.db.QueryRowContext(ctx, "SELECT count(*) FROM pg_locks WHERE "+pgsql.Where(k)+" AND NOT granted").Scan(&n); err != nil {
		t.Fatalf("pg_locks: %v", err)
	}
	return n
}

// holderPIDs returns the pids of the sessions holding k.
func (o *observer) holderPIDs(t testing.TB, k store.Key) []int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	rows, err := o.db.QueryContext(ctx, "SELECT pid FROM pg_locks WHERE "+pgsql.Where(k)+" AND granted")
	if err != nil {
		t.Fatalf("pg_locks: %v", err)
	}
	defer rows.Close()
	var pids []int64
	for rows.Next() {
		var pid int64
		if err := rows.Scan(&pid); err != nil {
			t.Fatal(err)
		}
		pids = append(pids, pid)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return pids
}

// eventually polls cond every 5 ms until it holds or d passes.
func eventually(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// ctxT returns a context that ends with a generous hang guard.
func ctxT(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func mustAcquire(t testing.TB, b store.Backend, k store.Key, req store.Request) store.Lease {
	t.Helper()
	l, err := b.Acquire(ctxT(t, 30*time.Second), k, req)
	if err != nil {
		t.Fatalf("Acquire(%q, %+v): %v", k.String, req, err)
	}
	return l
}

func mustRelease(t testing.TB, l store.Lease) {
	t.Helper()
	if err := l.Release(context.Background()); err != nil {
		t.Fatalf("Release: %v", err)
	}
}

// where is the pg_locks predicate of k in this database.
func where(k store.Key) string { return pgsql.Where(k) }

// kannukiName is the key a statement's Kannuki comment carries.
func kannukiName(query string) string { return pgsql.NameFromQuery(query) }

// commentName is what kannukiName returns for a statement on k (keys short
// enough not to be cut).
func commentName(k store.Key) string {
	return strings.TrimSuffix(strings.TrimPrefix(pgsql.Comment(k.String), "/* kannuki: "), " */")
}

// assertPoolClean takes every idle connection of db at once and checks
// that none of their sessions holds an advisory lock: the pool never gets
// a connection back with a lock on it.
func assertPoolClean(t testing.TB, db *sql.DB, _ ...store.Lease) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	n := db.Stats().Idle
	var conns []*sql.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for range n {
		c, err := db.Conn(ctx)
		if err != nil {
			t.Fatalf("taking idle connections: %v", err)
		}
		conns = append(conns, c)
		var held int
		if err := c.QueryRowContext(ctx, "SELECT count(*) FROM pg_locks WHERE pid = pg_backend_pid() AND locktype = 'advisory'").Scan(&held); err != nil {
			t.Fatalf("pooled connection: %v", err)
		}
		if held != 0 {
			t.Fatalf("a pooled connection holds %d advisory locks", held)
		}
	}
}
