package chaos

import (
	"context"
	"database/sql"
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/kannuki-go/kannuki/keys"
	"github.com/kannuki-go/kannuki/store"

	"github.com/go-sql-driver/mysql"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/kannuki-go/kannuki/internal/testdb"
	"github.com/kannuki-go/kannuki/kannukifile"
	"github.com/kannuki-go/kannuki/kannukimem"
	"github.com/kannuki-go/kannuki/kannukimysql"
	"github.com/kannuki-go/kannuki/kannukipg"
	"github.com/kannuki-go/kannuki/kannukipgxv5"
	"github.com/lib/pq"
)

// Backend kinds: every backend and, for kannukipg, both drivers.
const (
	kindPgxv5 = "pgxv5"         // kannukipgxv5 on a pgxpool.Pool
	kindPgPgx = "pg/pgx-stdlib" // kannukipg on database/sql with pgx/v5/stdlib
	kindPgPQ  = "pg/lib-pq"     // kannukipg on database/sql with lib/pq
	kindMySQL = "mysql"         // kannukimysql on MariaDB with go-sql-driver/mysql
	kindFile  = "file"          // kannukifile in a directory
	// kindBroken is a memory store per process: it excludes nothing across
	// processes, so the overlap checker must find overlaps on it.
	kindBroken = "broken"
)

// dbKinds are the database-backed kinds.
var dbKinds = []string{kindPgxv5, kindPgPgx, kindPgPQ, kindMySQL}

// allKinds adds the file store.
var allKinds = []string{kindPgxv5, kindPgPgx, kindPgPQ, kindMySQL, kindFile}

func isPG(kind string) bool { return kind == kindPgxv5 || kind == kindPgPgx || kind == kindPgPQ }

// backendConfig says how to open one backend.
type backendConfig struct {
	Kind     string
	AppName  string // PostgreSQL application_name of every session
	MaxConns int    // pool size; 0 means 8
	// PGOptions are PostgreSQL run-time options for every session
	// ("-c idle_session_timeout=1000").
	PGOptions string
	// MySQLVars are session variables for every MariaDB session
	// (wait_timeout=2), set by the driver on connect.
	MySQLVars map[string]string
	Dir       string // the file store's directory
	// DSN replaces the test database's DSN (the secrets cases).
	DSN string
	// Lazy opens the pool without connecting: the first lock call dials.
	Lazy bool
	// Dedicated turns kannukipgxv5's multiplexing off: every held lock pins
	// a connection of its own, as with the other database backends.
	Dedicated bool
	// NoWatch turns the backends' socket watch off (the keepalive-only
	// comparison of the told cases). The watch is on otherwise: on MariaDB
	// and lib/pq through the backends' Dialers.
	NoWatch bool
}

// pgDSN is the test database's DSN with an application_name and options.
func pgDSN(base, app, options string) string {
	if base == "" {
		base = testdb.PostgresDSN()
	}
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		// keyword=value form
		if app != "" {
			base += " application_name=" + app
		}
		if options != "" {
			base += " options='" + options + "'"
		}
		return base
	}
	q := u.Query()
	if app != "" {
		q.Set("application_name", app)
	}
	if options != "" {
		q.Set("options", options)
	}
	// pgx reads a '+' in the query literally: spaces must be %20.
	u.RawQuery = strings.ReplaceAll(q.Encode(), "+", "%20")
	return u.String()
}

// mysqlConfig is the test database's driver configuration with session variables.
func mysqlConfig(base string, vars map[string]string) (*mysql.Config, error) {
	if base == "" {
		base = testdb.MySQLDSN()
	}
	cfg, err := mysql.ParseDSN(base)
	if err != nil {
		return nil, err
	}
	if cfg.Params == nil {
		cfg.Params = map[string]string{}
	}
	for k, v := range vars {
		cfg.Params[k] = v
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 5 * time.Second
	}
	return cfg, nil
}

// openBackend opens cfg's backend. close releases the pool; call it after
// every lease is released.
func openBackend(ctx context.Context, cfg backendConfig) (b store.Backend, closeFn func(), err error) {
	n := cfg.MaxConns
	if n <= 0 {
		n = 8
	}
	pctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	switch cfg.Kind {
	case kindPgxv5:
		pc, err := pgxpool.ParseConfig(pgDSN(cfg.DSN, cfg.AppName, cfg.PGOptions))
		if err != nil {
			return nil, nil, err
		}
		pc.MaxConns = int32(n)
		pool, err := pgxpool.NewWithConfig(pctx, pc)
		if err != nil {
			return nil, nil, err
		}
		opts := kannukipgxv5.Options{NoWatch: cfg.NoWatch}
		if cfg.Dedicated {
			opts.SharedConns = -1
		}
		if cfg.Lazy {
			return kannukipgxv5.New(pool, opts), pool.Close, nil
		}
		if err := pool.Ping(pctx); err != nil {
			pool.Close()
			return nil, nil, err
		}
		return kannukipgxv5.New(pool, opts), pool.Close, nil
	case kindPgPgx, kindPgPQ:
		var db *sql.DB
		opts := kannukipg.Options{NoWatch: cfg.NoWatch}
		dsn := pgDSN(cfg.DSN, cfg.AppName, cfg.PGOptions)
		if cfg.Kind == kindPgPgx {
			pc, err := pgx.ParseConfig(dsn)
			if err != nil {
				return nil, nil, err
			}
			db = stdlib.OpenDB(*pc)
		} else {
			conn, err := pq.NewConnector(dsn)
			if err != nil {
				return nil, nil, err
			}
			opts.Dialer = &kannukipg.Dialer{}
			conn.Dialer(opts.Dialer)
			db = sql.OpenDB(conn)
		}
		db.SetMaxOpenConns(n)
		db.SetMaxIdleConns(n)
		if err := ping(pctx, db, cfg.Lazy); err != nil {
			db.Close()
			return nil, nil, err
		}
		return kannukipg.New(db, opts), func() { db.Close() }, nil
	case kindMySQL:
		mc, err := mysqlConfig(cfg.DSN, cfg.MySQLVars)
		if err != nil {
			return nil, nil, err
		}
		d := &kannukimysql.Dialer{}
		mc.DialFunc = d.DialNetwork
		conn, err := mysql.NewConnector(mc)
		if err != nil {
			return nil, nil, err
		}
		db := sql.OpenDB(conn)
		db.SetMaxOpenConns(n)
		db.SetMaxIdleConns(n)
		if err := ping(pctx, db, cfg.Lazy); err != nil {
			db.Close()
			return nil, nil, err
		}
		return kannukimysql.New(db, kannukimysql.Options{Dialer: d, NoWatch: cfg.NoWatch}), func() { db.Close() }, nil
	case kindBroken:
		return kannukimem.New(), func() {}, nil
	case kindFile:
		fb, err := kannukifile.New(cfg.Dir, kannukifile.Options{})
		if err != nil {
			return nil, nil, err
		}
		return fb, func() { fb.Close() }, nil
	}
	return nil, nil, fmt.Errorf("unknown backend kind %q", cfg.Kind)
}

func ping(ctx context.Context, db *sql.DB, lazy bool) error {
	if lazy {
		return nil
	}
	return db.PingContext(ctx)
}

// mustBackend opens cfg's backend for t, skipping (or failing with
// KANNUKI_TEST_REQUIRE_DB=1) when its database is unreachable. The pool
// closes at the end of t.
func mustBackend(t testing.TB, cfg backendConfig) store.Backend {
	t.Helper()
	if cfg.Kind == kindFile && cfg.Dir == "" {
		cfg.Dir = t.TempDir()
	}
	b, closeFn, err := openBackend(context.Background(), cfg)
	if err != nil {
		what := "PostgreSQL"
		if cfg.Kind == kindMySQL {
			what = "MariaDB"
		}
		if cfg.Kind == kindFile {
			t.Fatalf("file backend: %v", err)
		}
		testdb.Unavailable(t, what, err)
	}
	t.Cleanup(closeFn)
	return b
}

// pgAdmin is a connection of its own to PostgreSQL, for looking at
// pg_locks and terminating sessions. It holds no lock of the tests.
func pgAdmin(t testing.TB) *pgx.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, pgDSN("", "kannuki-chaos-admin", ""))
	if err != nil {
		testdb.Unavailable(t, "PostgreSQL", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = c.Close(ctx)
	})
	return c
}

// mysqlAdmin is a pool of its own on MariaDB, for IS_USED_LOCK and KILL.
func mysqlAdmin(t testing.TB) *sql.DB {
	t.Helper()
	mc, err := mysqlConfig("", nil)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := mysql.NewConnector(mc)
	if err != nil {
		t.Fatal(err)
	}
	db := sql.OpenDB(conn)
	db.SetMaxOpenConns(4)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		testdb.Unavailable(t, "MariaDB", err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// pgHeld lists the sessions holding (granted) or awaiting the advisory
// locks of keys in the current database.
func pgLockPIDs(ctx context.Context, c *pgx.Conn, names []string, granted bool) ([]int32, error) {
	var conds []string
	for _, k := range names {
		key, err := keys.Ruby{}.Derive("", k)
		if err != nil {
			return nil, err
		}
		cls, obj := keys.ClassObjID(key.ID)
		conds = append(conds, fmt.Sprintf("(classid = %d AND objid = %d)", cls, obj))
	}
	q := "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND objsubid = 1 AND database = (SELECT oid FROM pg_database WHERE datname = current_database()) AND granted = $1 AND (" + strings.Join(conds, " OR ") + ")"
	rows, err := c.Query(ctx, q, granted)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, pgx.RowTo[int32])
}

// mysqlHolders returns the connection ids holding keys' GET_LOCK names.
func mysqlHolders(ctx context.Context, db *sql.DB, names []string) ([]int64, error) {
	var out []int64
	for _, k := range names {
		key, err := keys.Ruby{}.Derive("", k)
		if err != nil {
			return nil, err
		}
		var id sql.NullInt64
		if err := db.QueryRowContext(ctx, "SELECT IS_USED_LOCK(CONVERT(CAST(? AS BINARY) USING utf8mb4))", key.Name).Scan(&id); err != nil {
			return nil, err
		}
		if id.Valid {
			out = append(out, id.Int64)
		}
	}
	return out, nil
}
