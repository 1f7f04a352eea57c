package bench

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/jackc/pgx/v5/pgxpool"
	_ "github.com/jackc/pgx/v5/stdlib" // database/sql driver "pgx"
	"github.com/kannuki-go/kannuki/internal/testdb"
	_ "github.com/lib/pq" // database/sql driver "postgres"
	"github.com/redis/go-redis/v9"
)

// Env says where the services are and names what a run creates.
type Env struct {
	PostgresDSN string // pgx / lib/pq URL or keyword form
	MySQLDSN    string // go-sql-driver/mysql form
	RedisAddr   string // host:port
	// AppName is the application_name of every PostgreSQL session the
	// run opens, so that its sessions can be told from other clients'.
	AppName string
	// Run is a random id inside every key, so that concurrent runs and
	// other clients of the same servers never meet on a key.
	Run string
}

// NewEnv reads the DSNs from internal/testdb (KANNUKI_PG_DSN,
// KANNUKI_MYSQL_DSN, KANNUKI_REDIS_ADDR or the defaults).
func NewEnv() Env {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return Env{
		PostgresDSN: testdb.PostgresDSN(),
		MySQLDSN:    testdb.MySQLDSN(),
		RedisAddr:   testdb.RedisAddr(),
		AppName:     "kannukibench",
		Run:         hex.EncodeToString(b[:]),
	}
}

// Key returns a key unique to this run.
func (e Env) Key(parts ...any) string {
	var b strings.Builder
	b.WriteString("kannukibench/")
	b.WriteString(e.Run)
	for _, p := range parts {
		b.WriteByte('/')
		fmt.Fprint(&b, p)
	}
	return b.String()
}

// pgDSN is PostgresDSN with application_name set.
func (e Env) pgDSN() string {
	dsn := e.PostgresDSN
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		u, err := url.Parse(dsn)
		if err != nil {
			return dsn
		}
		q := u.Query()
		q.Set("application_name", e.AppName)
		u.RawQuery = q.Encode()
		return u.String()
	}
	return dsn + " application_name=" + e.AppName
}

// connectTimeout bounds opening a pool and its first ping.
const connectTimeout = 10 * time.Second

// PgxPool opens a pgxpool of at most maxConns connections and pings it.
func (e Env) PgxPool(ctx context.Context, maxConns int) (*pgxpool.Pool, error) {
	cfg, err := pgxpool.ParseConfig(e.pgDSN())
	if err != nil {
		return nil, err
	}
	cfg.MaxConns = int32(maxConns)
	cfg.MinConns = 0
	ctx, cancel := context.WithTimeout(ctx, connectTimeout)
	defer cancel()
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, err
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, err
	}
	return pool, nil
}

// PostgresDB opens a *sql.DB on driver "pgx" (pgx/stdlib) or "postgres"
// (lib/pq) with at most maxOpen connections, all kept idle, and pings it.
func (e Env) PostgresDB(ctx context.Context, driver string, maxOpen int) (*sql.DB, error) {
	db, err := sql.Open(driver, e.pgDSN())
	if err != nil {
		return nil, err
	}
	return pinged(ctx, db, maxOpen)
}

// MySQLDB opens a *sql.DB with go-sql-driver/mysql, with or without
// interpolateParams, at most maxOpen connections, and pings it.
func (e Env) MySQLDB(ctx context.Context, maxOpen int, interpolate bool) (*sql.DB, error) {
	cfg, err := mysql.ParseDSN(e.MySQLDSN)
	if err != nil {
		return nil, err
	}
	cfg.InterpolateParams = interpolate
	conn, err := mysql.NewConnector(cfg)
	if err != nil {
		return nil, err
	}
	return pinged(ctx, sql.OpenDB(conn), maxOpen)
}

func pinged(ctx context.Context, db *sql.DB, maxOpen int) (*sql.DB, error) {
	db.SetMaxOpenConns(maxOpen)
	db.SetMaxIdleConns(maxOpen)
	ctx, cancel := context.WithTimeout(ctx, connectTimeout)
	defer cancel()
	if err := db.PingContext(ctx); err != nil {
		_ = db.Close()
		return nil, err
	}
	return db, nil
}

// Redis opens a go-redis client with poolSize connections and pings it.
func (e Env) Redis(ctx context.Context, poolSize int) (*redis.Client, error) {
	c := redis.NewClient(&redis.Options{Addr: e.RedisAddr, PoolSize: poolSize, MaxIdleConns: poolSize})
	ctx, cancel := context.WithTimeout(ctx, connectTimeout)
	defer cancel()
	if err := c.Ping(ctx).Err(); err != nil {
		_ = c.Close()
		return nil, err
	}
	return c, nil
}
