package kannukiriver_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.uber.org/goleak"

	"github.com/kannuki-go/kannuki"
	"github.com/kannuki-go/kannuki/internal/testdb"
	"github.com/kannuki-go/kannuki/kannukipgxv5"
)

// hangGuard only turns a hang into a failure; it is never a timing assertion.
const hangGuard = 30 * time.Second

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func randomSuffix(t testing.TB) string {
	t.Helper()
	b := make([]byte, 6)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// newPool opens a pool of at most maxConns connections, closed at the end of
// t. It skips (or fails with KANNUKI_TEST_REQUIRE_DB=1) without the database.
func newPool(t testing.TB, maxConns int32) *pgxpool.Pool {
	t.Helper()
	cfg, err := pgxpool.ParseConfig(testdb.PostgresDSN())
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
		testdb.Unavailable(t, "PostgreSQL", err)
	}
	t.Cleanup(pool.Close)
	return pool
}

// events counts lock events by kind and key; it is a kannuki.Hook.
type events struct {
	mu     sync.Mutex
	counts map[kannuki.EventKind]map[string]int
	notify chan struct{}
}

func newEvents() *events {
	return &events{counts: map[kannuki.EventKind]map[string]int{}, notify: make(chan struct{}, 1)}
}

func (e *events) LockEvent(_ context.Context, ev kannuki.Event) {
	e.mu.Lock()
	m := e.counts[ev.Kind]
	if m == nil {
		m = map[string]int{}
		e.counts[ev.Kind] = m
	}
	m[ev.Key]++
	e.mu.Unlock()
	select {
	case e.notify <- struct{}{}:
	default:
	}
}

// count is the number of events of kind whose key contains part.
func (e *events) count(kind kannuki.EventKind, part string) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	n := 0
	for k, c := range e.counts[kind] {
		if strings.Contains(k, part) {
			n += c
		}
	}
	return n
}

// waitFor waits until at least n events of kind with part in their key
// arrived, or ctx ends. It reports whether they did.
func (e *events) waitFor(ctx context.Context, kind kannuki.EventKind, part string, n int) bool {
	for {
		if e.count(kind, part) >= n {
			return true
		}
		select {
		case <-e.notify:
		case <-ctx.Done():
			return e.count(kind, part) >= n
		}
	}
}

// newLocker returns a Locker on a kannukipgxv5 backend with a pool of its
// own (as a separate process would have), with a unique key prefix.
func newLocker(t testing.TB, prefix string, hook kannuki.Hook) *kannuki.Locker {
	t.Helper()
	pool := newPool(t, 20)
	return kannuki.New(kannukipgxv5.New(pool, kannukipgxv5.Options{}), kannuki.Options{KeyPrefix: prefix, Hook: hook})
}

// riverSchema creates a schema of its own for this test, dropped at the end
// of t, so that concurrent test runs never see each other's jobs.
func riverSchema(t testing.TB, pool *pgxpool.Pool) string {
	t.Helper()
	schema := "kannukiriver_" + randomSuffix(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := pool.Exec(ctx, "CREATE SCHEMA "+pgx.Identifier{schema}.Sanitize()); err != nil {
		t.Fatalf("create schema: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if _, err := pool.Exec(ctx, "DROP SCHEMA "+pgx.Identifier{schema}.Sanitize()+" CASCADE"); err != nil {
			t.Errorf("drop schema %s: %v", schema, err)
		}
	})
	return schema
}
