package kannukiasynq_test

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"

	"github.com/kannuki-go/kannuki"
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
// own (as a separate process would have).
func newLocker(t testing.TB, prefix string, hook kannuki.Hook) *kannuki.Locker {
	t.Helper()
	pool := newPool(t, 20)
	return kannuki.New(kannukipgxv5.New(pool, kannukipgxv5.Options{}), kannuki.Options{KeyPrefix: prefix, Hook: hook})
}

// newRedis returns a client of the local Redis, closed at the end of t.
func newRedis(t testing.TB) *redis.Client {
	t.Helper()
	rc := redis.NewClient(&redis.Options{Addr: testdb.RedisAddr()})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := rc.Ping(ctx).Err(); err != nil {
		_ = rc.Close()
		testdb.Unavailable(t, "Redis", err)
	}
	t.Cleanup(func() { _ = rc.Close() })
	return rc
}
