package hooktest

import (
	"context"
	"database/sql"
	"testing"
	"time"

	"github.com/kannuki-go/kannuki/store"

	"github.com/kannuki-go/kannuki/internal/pgsql"
	"github.com/kannuki-go/kannuki/internal/testdb"
	"github.com/kannuki-go/kannuki/kannukipg"
)

// Env is a PostgreSQL backend (kannukipg over the caller's driver) for the
// tests plus an observer pool that sees the server's side: who waits on a
// key, and a way to kill the session holding one.
type Env struct {
	Backend store.Backend
	obs     *sql.DB
}

// NewEnv opens the backend's pool and the observer's with the
// database/sql driver named driver on testdb.PostgresDSN(); it skips or
// fails (testdb.Unavailable) when PostgreSQL cannot be reached.
func NewEnv(t testing.TB, driver string) *Env {
	t.Helper()
	db := OpenDB(t, driver)
	obs, err := sql.Open(driver, testdb.PostgresDSN())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { obs.Close() })
	return &Env{Backend: kannukipg.New(db, kannukipg.Options{}), obs: obs}
}

// OpenDB opens a pool with the database/sql driver named driver on
// testdb.PostgresDSN(), closed when the test ends, and pings it: the test
// skips or fails (testdb.Unavailable) when PostgreSQL cannot be reached.
func OpenDB(t testing.TB, driver string) *sql.DB {
	t.Helper()
	db, err := sql.Open(driver, testdb.PostgresDSN())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := db.PingContext(ctx); err != nil {
		testdb.Unavailable(t, "PostgreSQL", err)
	}
	return db
}

// Waiting reports whether some session waits for k (a lock not granted).
func (e *Env) Waiting(t testing.TB, k store.Key) bool {
	t.Helper()
	var n int
	err := e.obs.QueryRow("SELECT count(*) FROM pg_locks WHERE " + pgsql.Where(k) + " AND NOT granted").Scan(&n)
	if err != nil {
		t.Fatal(err)
	}
	return n > 0
}

// AwaitWaiting polls until some session waits for k, or fails after 10 s.
func (e *Env) AwaitWaiting(t testing.TB, k store.Key) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !e.Waiting(t, k) {
		if time.Now().After(deadline) {
			t.Fatalf("nobody waits for %q after 10s", k.String)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// AwaitNotWaiting polls until nobody waits for k, or fails after 10 s.
func (e *Env) AwaitNotWaiting(t testing.TB, k store.Key) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for e.Waiting(t, k) {
		if time.Now().After(deadline) {
			t.Fatalf("someone still waits for %q after 10s", k.String)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// Kill terminates the session holding k, as an operator or a failover
// would; it fails unless exactly one session held it.
func (e *Env) Kill(t testing.TB, k store.Key) {
	t.Helper()
	var n int
	err := e.obs.QueryRow("SELECT count(pg_terminate_backend(pid)) FROM pg_locks WHERE " + pgsql.Where(k) + " AND granted").Scan(&n)
	if err != nil || n != 1 {
		t.Fatalf("killing the holder of %q: %d sessions, %v", k.String, n, err)
	}
}

// SingleConnBackend is kannukipg on a pool of one connection (the
// database/sql driver named driver), for benchmarks that compare Lockers:
// all of them then talk to one server process, where two connections'
// processes may be scheduled very differently on a small machine.
func SingleConnBackend(tb testing.TB, driver string) store.Backend {
	tb.Helper()
	db := OpenDB(tb, driver)
	db.SetMaxOpenConns(1)
	return kannukipg.New(db, kannukipg.Options{})
}
