package kannukipgxv5

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"os"
	"testing"
	"time"

	"github.com/kannuki-go/kannuki/keys"
	"github.com/kannuki-go/kannuki/store"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/kannuki-go/kannuki/internal/pgsql"
	"github.com/kannuki-go/kannuki/internal/testdb"
	"go.uber.org/goleak"
)

// hangGuard only turns a hang into a failure; it is never a timing assertion.
const hangGuard = 30 * time.Second

func TestMain(m *testing.M) {
	if key := os.Getenv(crashChildEnv); key != "" {
		crashChild(key) // never returns
	}
	goleak.VerifyTestMain(m)
}

// newPool opens a pool of at most maxConns connections, closed at the end
// of t. It skips (or fails with KANNUKI_TEST_REQUIRE_DB=1) without the
// database.
func newPool(t testing.TB, maxConns int32) *pgxpool.Pool {
	t.Helper()
	cfg := poolConfig(t)
	cfg.MaxConns = maxConns
	return openPool(t, cfg)
}

func poolConfig(t testing.TB) *pgxpool.Config {
	t.Helper()
	cfg, err := pgxpool.ParseConfig(testdb.PostgresDSN())
	if err != nil {
		t.Fatalf("parse DSN: %v", err)
	}
	return cfg
}

// openPool opens a pool on cfg, closed at the end of t.
func openPool(t testing.TB, cfg *pgxpool.Config) *pgxpool.Pool {
	t.Helper()
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
		testdb.Unavailable(t, "PostgreSQL", err)
	}
	t.Cleanup(pool.Close)
	return pool
}

// observer is a "third session": a connection of its own, holding none of
// the test's locks, that looks at pg_locks.
type observer struct {
	t testing.TB
	c *pgx.Conn
}

func newObserver(t testing.TB) *observer {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, testdb.PostgresDSN())
	if err != nil {
		testdb.Unavailable(t, "PostgreSQL", err)
	}
	t.Cleanup(func() { _ = c.Close(context.Background()) })
	return &observer{t: t, c: c}
}

// lockRow is one pg_locks row of a key.
type lockRow struct {
	PID     uint32
	Mode    string
	Granted bool
}

// rows returns the pg_locks rows of key in the current database.
func (o *observer) rows(k store.Key) []lockRow {
	o.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), hangGuard)
	defer cancel()
	rs, err := o.c.Query(ctx, "SELECT pid, mode, granted FROM pg_locks WHERE "+pgsql.Where(k)+" ORDER BY granted DESC, pid", pgx.QueryExecModeSimpleProtocol)
	if err != nil {
		o.t.Fatalf("observer: %v", err)
	}
	out, err := pgx.CollectRows(rs, func(r pgx.CollectableRow) (lockRow, error) {
		var l lockRow
		var pid int32
		err := r.Scan(&pid, &l.Mode, &l.Granted)
		l.PID = uint32(pid)
		return l, err
	})
	if err != nil {
		o.t.Fatalf("observer: %v", err)
	}
	return out
}

// holders returns the pids holding key (granted rows).
func (o *observer) holders(k store.Key) []uint32 {
	o.t.Helper()
	var pids []uint32
	for _, r := range o.rows(k) {
		if r.Granted {
			pids = append(pids, r.PID)
		}
	}
	return pids
}

// waiters returns the pids waiting for key.
func (o *observer) waiters(k store.Key) []uint32 {
	o.t.Helper()
	var pids []uint32
	for _, r := range o.rows(k) {
		if !r.Granted {
			pids = append(pids, r.PID)
		}
	}
	return pids
}

// waitFor polls cond until it is true, failing the test after hangGuard.
func (o *observer) waitFor(what string, cond func() bool) {
	o.t.Helper()
	deadline := time.Now().Add(hangGuard)
	for !cond() {
		if time.Now().After(deadline) {
			o.t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// waitWaiters waits until n sessions wait for key and returns their pids.
func (o *observer) waitWaiters(k store.Key, n int) []uint32 {
	o.t.Helper()
	var w []uint32
	o.waitFor("waiters", func() bool {
		w = o.waiters(k)
		return len(w) >= n
	})
	return w
}

// poolHoldsNone checks that no idle connection of pool holds an advisory
// lock: the connections a later caller would get are clean.
func poolHoldsNone(t testing.TB, pool *pgxpool.Pool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), hangGuard)
	defer cancel()
	conns := pool.AcquireAllIdle(ctx)
	defer func() {
		for _, c := range conns {
			c.Release()
		}
	}()
	for _, c := range conns {
		var n int
		if err := c.QueryRow(ctx, "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()").Scan(&n); err != nil {
			t.Fatalf("pooled connection: %v", err)
		}
		if n != 0 {
			t.Errorf("pooled connection (pid %d) holds %d advisory locks", c.Conn().PgConn().PID(), n)
		}
	}
}

// newKey derives a key unique to t and this run (other tests and other
// helpers share the database).
func newKey(t testing.TB, what string) store.Key {
	t.Helper()
	k, err := keys.Ruby{}.Derive("kannukipgxv5-test", t.Name()+"/"+what+"/"+randHex())
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// randHex makes names unique across runs and concurrent test processes.
func randHex() string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func guardCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), hangGuard)
}

func excl(wait time.Duration) store.Request {
	return store.Request{Mode: store.ModeExclusive, Wait: wait}
}

func shared(wait time.Duration) store.Request {
	return store.Request{Mode: store.ModeShared, Wait: wait}
}

// heldLease is what both kinds of lease (a connection of its own, a
// shared connection) offer the tests.
type heldLease interface {
	store.Lease
	store.Checker
	PID() uint32
}

func mustAcquire(t testing.TB, b *Backend, k store.Key, req store.Request) heldLease {
	t.Helper()
	ctx, cancel := guardCtx()
	defer cancel()
	l, err := b.Acquire(ctx, k, req)
	if err != nil {
		t.Fatalf("Acquire(%q, %v): %v", k.String, req, err)
	}
	return l.(heldLease)
}

// pidOf is the server process id of the session holding l.
func pidOf(l store.Lease) uint32 { return l.(heldLease).PID() }

// dedicatedOpts turns multiplexing off: every lock pins its own connection.
var dedicatedOpts = Options{SharedConns: -1}

// modes are the two ways of holding locks, for tests that run in both.
var modes = []struct {
	name string
	opts Options
}{
	{"mux", Options{}},
	{"dedicated", dedicatedOpts},
}

func mustRelease(t testing.TB, l store.Lease) {
	t.Helper()
	ctx, cancel := guardCtx()
	defer cancel()
	if err := l.Release(ctx); err != nil {
		t.Fatalf("Release: %v", err)
	}
}

// notAcquired fails unless err matches ErrNotAcquired.
func notAcquired(t testing.TB, err error) {
	t.Helper()
	if !errors.Is(err, store.ErrNotAcquired) {
		t.Fatalf("got %v, want an error matching ErrNotAcquired", err)
	}
}
