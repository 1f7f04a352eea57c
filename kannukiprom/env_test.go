package kannukiprom_test

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"strings"
	"sync"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // database/sql driver "pgx"
	"github.com/kannuki-go/kannuki"
	"github.com/kannuki-go/kannuki/internal/pgsql"
	"github.com/kannuki-go/kannuki/internal/testdb"
	"github.com/kannuki-go/kannuki/kannukipg"
)

// pgEnv is a PostgreSQL backend (kannukipg over pgx/stdlib) for the tests
// plus an observer pool that sees the server's side: who waits on a key,
// and a way to kill the session holding one.
type pgEnv struct {
	backend kannuki.Backend
	obs     *sql.DB
}

func newPGEnv(t testing.TB) *pgEnv {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	db, err := sql.Open("pgx", testdb.PostgresDSN())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if err := db.PingContext(ctx); err != nil {
		testdb.Unavailable(t, "PostgreSQL", err)
	}
	obs, err := sql.Open("pgx", testdb.PostgresDSN())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { obs.Close() })
	return &pgEnv{backend: kannukipg.New(db, kannukipg.Options{}), obs: obs}
}

// waiting reports whether some session waits for k (a lock not granted).
func (e *pgEnv) waiting(t testing.TB, k kannuki.Key) bool {
	t.Helper()
	var n int
	err := e.obs.QueryRow("SELECT count(*) FROM pg_locks WHERE " + pgsql.Where(k) + " AND NOT granted").Scan(&n)
	if err != nil {
		t.Fatal(err)
	}
	return n > 0
}

// awaitWaiting polls until some session waits for k, or fails after 10 s.
func (e *pgEnv) awaitWaiting(t testing.TB, k kannuki.Key) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !e.waiting(t, k) {
		if time.Now().After(deadline) {
			t.Fatalf("nobody waits for %q after 10s", k.String)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// kill terminates the sessions holding k, as an operator or a failover would.
func (e *pgEnv) kill(t testing.TB, k kannuki.Key) {
	t.Helper()
	var n int
	err := e.obs.QueryRow("SELECT count(pg_terminate_backend(pid)) FROM pg_locks WHERE " + pgsql.Where(k) + " AND granted").Scan(&n)
	if err != nil || n != 1 {
		t.Fatalf("killing the holder of %q: %d sessions, %v", k.String, n, err)
	}
}

// uniqueKey is a key no other test (or concurrent test run) uses.
func uniqueKey(t testing.TB) string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return "kannukiprom-test/" + strings.ReplaceAll(t.Name(), "/", "-") + "/" + hex.EncodeToString(b[:])
}

// who tags a call's context so the recorder can tell the calls apart.
type whoKey struct{}

func as(ctx context.Context, who string) context.Context {
	return context.WithValue(ctx, whoKey{}, who)
}

// recorder is a kannuki.Hook keeping every event by the call that caused it.
type recorder struct {
	mu  sync.Mutex
	all []kannuki.Event
	by  map[string][]kannuki.Event
}

func (r *recorder) LockEvent(ctx context.Context, e kannuki.Event) {
	who, _ := ctx.Value(whoKey{}).(string)
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.by == nil {
		r.by = make(map[string][]kannuki.Event)
	}
	r.all = append(r.all, e)
	r.by[who] = append(r.by[who], e)
}

func (r *recorder) of(who string) []kannuki.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]kannuki.Event(nil), r.by[who]...)
}

// awaitNotWaiting polls until nobody waits for k, or fails after 10 s.
func (e *pgEnv) awaitNotWaiting(t testing.TB, k kannuki.Key) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for e.waiting(t, k) {
		if time.Now().After(deadline) {
			t.Fatalf("someone still waits for %q after 10s", k.String)
		}
		time.Sleep(2 * time.Millisecond)
	}
}
