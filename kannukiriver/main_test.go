package kannukiriver_test

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.uber.org/goleak"

	"github.com/kannuki-go/kannuki"
	"github.com/kannuki-go/kannuki/internal/queuetest"
	"github.com/kannuki-go/kannuki/internal/testdb"
	"github.com/kannuki-go/kannuki/kannukipgxv5"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

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
	schema := "kannukiriver_" + queuetest.RandomSuffix(t)
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
