// Package mysql tests kannukimysql against a real MariaDB (or MySQL)
// through github.com/go-sql-driver/mysql, with the DSN as given and with
// interpolateParams=true: the two ways the driver sends statements with
// arguments. Most tests run once per DSN.
package mysql

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"io"
	"log"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/kannuki-go/kannuki/keys"
	"github.com/kannuki-go/kannuki/store"

	"github.com/go-sql-driver/mysql"
	"go.uber.org/goleak"

	"github.com/kannuki-go/kannuki/internal/testdb"
	"github.com/kannuki-go/kannuki/kannukimysql"
)

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) != "" {
		os.Exit(childMain())
	}
	// The driver logs every connection a test kills on purpose.
	_ = mysql.SetLogger(log.New(io.Discard, "", 0))
	goleak.VerifyTestMain(m)
}

// variant is one way of connecting.
type variant struct {
	name string // subtest name
	dsn  func() string
}

var variants = []variant{
	{"default", testdb.MySQLDSN},
	{"interpolate", func() string { return withParam(testdb.MySQLDSN(), "interpolateParams=true") }},
}

// withParam adds a DSN parameter.
func withParam(dsn, p string) string {
	if strings.Contains(dsn, "?") {
		return dsn + "&" + p
	}
	return dsn + "?" + p
}

// forEachVariant runs f as a subtest per DSN variant.
func forEachVariant(t *testing.T, f func(t *testing.T, v variant)) {
	t.Helper()
	for _, v := range variants {
		t.Run(v.name, func(t *testing.T) { f(t, v) })
	}
}

// openDB opens a pool (maxOpen 0: no limit), closed at the end of the
// test. It skips or fails (KANNUKI_TEST_REQUIRE_DB=1) when the server is
// unreachable.
func openDB(t testing.TB, dsn string, maxOpen int) *sql.DB {
	t.Helper()
	db, err := sql.Open("mysql", dsn)
	if err != nil {
		t.Fatal(err)
	}
	return readyDB(t, db, maxOpen)
}

// readyDB sizes db's pool, checks the server answers and closes db at the
// end of the test.
func readyDB(t testing.TB, db *sql.DB, maxOpen int) *sql.DB {
	t.Helper()
	db.SetMaxOpenConns(maxOpen)
	db.SetMaxIdleConns(max(maxOpen, 4))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		testdb.Unavailable(t, "MariaDB", err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// newBackend opens a pool and a Backend on it.
func newBackend(t testing.TB, v variant, maxOpen int, opts kannukimysql.Options) (*kannukimysql.Backend, *sql.DB) {
	t.Helper()
	db := openDB(t, v.dsn(), maxOpen)
	return kannukimysql.New(db, opts), db
}

// randSuffix is a short random hex string.
func randSuffix() string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// uniqueKey derives a key that no other test or helper uses. Long test
// names end up hashed by the default scheme, which is fine.
func uniqueKey(t testing.TB, parts ...string) store.Key {
	t.Helper()
	name := strings.Join(append([]string{"kmy", t.Name(), randSuffix()}, parts...), "/")
	k, err := keys.Ruby{}.Derive("", name)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// observer is a "third session": a pool of its own holding no lock, used
// to look at the server from outside.
type observer struct {
	db *sql.DB
}

func newObserver(t testing.TB) *observer {
	t.Helper()
	return &observer{db: openDB(t, withParam(testdb.MySQLDSN(), "interpolateParams=true"), 4)}
}

// owner returns the session holding k's name (IS_USED_LOCK), 0 if none.
// The name goes as an argument, escaped by the driver: an encoding
// independent of the backend's.
func (o *observer) owner(t testing.TB, k store.Key) int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var id sql.NullInt64
	if err := o.db.QueryRowContext(ctx, "SELECT IS_USED_LOCK(?)", k.Name).Scan(&id); err != nil {
		t.Fatalf("IS_USED_LOCK: %v", err)
	}
	return id.Int64
}

// waitFree polls until nobody holds k (a destroyed connection's session
// ends asynchronously), failing after 10 s.
func (o *observer) waitFree(t testing.TB, k store.Key) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for o.owner(t, k) != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%q still held by session %d after 10 s", k.String, o.owner(t, k))
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// kill ends session id.
func (o *observer) kill(t testing.TB, id int64) {
	t.Helper()
	if _, err := o.db.Exec("KILL ?", id); err != nil {
		t.Fatalf("KILL %d: %v", id, err)
	}
}

// waiter describes a session waiting in GET_LOCK for a name.
type waiter struct {
	id, queryID, timeMS int64
	info                string
}

// waiters lists the sessions whose waiting statement mentions k's name as
// Kannuki's hex literal.
func (o *observer) waiters(t testing.TB, k store.Key) []waiter {
	t.Helper()
	rows, err := o.db.Query("SELECT ID, QUERY_ID, TIME_MS, INFO FROM information_schema.PROCESSLIST WHERE STATE = 'User lock' AND INFO LIKE ?",
		"%"+hex.EncodeToString([]byte(k.Name))+"%")
	if err != nil {
		t.Fatalf("processlist: %v", err)
	}
	defer rows.Close()
	var ws []waiter
	for rows.Next() {
		var w waiter
		var ms float64
		if err := rows.Scan(&w.id, &w.queryID, &ms, &w.info); err != nil {
			t.Fatal(err)
		}
		w.timeMS = int64(ms)
		ws = append(ws, w)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return ws
}

// waitWaiters polls until n sessions wait for k.
func (o *observer) waitWaiters(t testing.TB, k store.Key, n int) []waiter {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		ws := o.waiters(t, k)
		if len(ws) >= n {
			return ws
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d sessions waiting for %q after 10 s, want %d", len(ws), k.String, n)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// exclusive is a request for an exclusive lock.
func exclusive(wait time.Duration) store.Request {
	return store.Request{Mode: store.ModeExclusive, Wait: wait}
}

// guard is a context for one step of a test: a generous hang guard.
func guard() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), 30*time.Second)
}

// mustAcquire acquires k or fails the test.
func mustAcquire(t testing.TB, b store.Backend, k store.Key) store.Lease {
	t.Helper()
	ctx, cancel := guard()
	defer cancel()
	l, err := b.Acquire(ctx, k, exclusive(store.WaitForever))
	if err != nil {
		t.Fatalf("Acquire(%q): %v", k.String, err)
	}
	return l
}

// mustRelease releases l or fails the test.
func mustRelease(t testing.TB, l store.Lease) {
	t.Helper()
	ctx, cancel := guard()
	defer cancel()
	if err := l.Release(ctx); err != nil {
		t.Fatalf("Release: %v", err)
	}
}
