// Package exampleenv is the plumbing shared by the example programs: the
// common flags, opening the chosen lock backend and the database that holds
// the example's data, and printing the one-line summary. It is not part of
// what the examples show; each program's main.go is.
package exampleenv

import (
	"context"
	"database/sql"
	"flag"
	"fmt"
	"os"
	"regexp"
	"strings"
	"time"

	"github.com/kannuki-go/kannuki/store"

	_ "github.com/go-sql-driver/mysql" // database/sql driver "mysql"
	_ "github.com/jackc/pgx/v5/stdlib" // database/sql driver "pgx"

	"github.com/kannuki-go/kannuki"
	"github.com/kannuki-go/kannuki/kannukifile"
	"github.com/kannuki-go/kannuki/kannukimysql"
	"github.com/kannuki-go/kannuki/kannukipg"
)

// Default DSNs of the development and CI machines; KANNUKI_PG_DSN and
// KANNUKI_MYSQL_DSN override them.
const (
	DefaultPostgresDSN = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"
	DefaultMySQLDSN    = "root@tcp(127.0.0.1:3306)/test"
)

// Backend names accepted by -backend.
const (
	Postgres = "pg"
	MySQL    = "mysql"
	File     = "file"
)

// Config is what the common flags set.
type Config struct {
	Backend string // pg, mysql, file or none
	DSN     string // the database holding the data (and the locks, for pg and mysql)
	LockDir string // the lock directory of the file backend
	Run     string // names this run: tags its rows and prefixes its lock keys
	Workers int    // goroutines doing the work in this process
	Start   int64  // Unix milliseconds at which the work starts; 0 = at once
}

// Flags registers the common flags on fs.
func Flags(fs *flag.FlagSet) *Config {
	c := &Config{}
	fs.StringVar(&c.Backend, "backend", Postgres, "lock backend: pg (PostgreSQL advisory locks), mysql (MariaDB/MySQL GET_LOCK), file (file locks, one host; the data then lives in PostgreSQL) or none (no locking: see what goes wrong)")
	fs.StringVar(&c.DSN, "dsn", "", "database holding the example's data; default $KANNUKI_PG_DSN or "+DefaultPostgresDSN+" (pg, file, none), $KANNUKI_MYSQL_DSN or "+DefaultMySQLDSN+" (mysql)")
	fs.StringVar(&c.LockDir, "lockdir", "", "lock directory of the file backend (default: kannukifile.DefaultDir)")
	fs.StringVar(&c.Run, "run", "demo", "run id [a-z0-9_]: processes with the same id share the work; rows are tagged with it")
	fs.IntVar(&c.Workers, "workers", 4, "goroutines in this process")
	fs.Int64Var(&c.Start, "start", 0, "Unix milliseconds at which to start working, so that several processes start together (0: at once)")
	return c
}

var runID = regexp.MustCompile(`^[a-z0-9_]{1,40}$`)

// Env is an opened configuration: the Locker to use and the data's database.
type Env struct {
	Config
	Locker *kannuki.Locker
	// DB is the pool of the data's database. For pg and mysql the locks
	// use it too: each held lock pins one connection.
	DB *sql.DB
	// Data runs statements on DB with ? placeholders on either database.
	Data SQL
	// Pid identifies this process in the rows it writes.
	Pid int

	// Store is the lock backend under Locker.
	Store store.Backend

	setup  *kannuki.Locker // Locker, but real with -backend none
	schema *kannuki.Locker // prefixed without the run: tables are shared by all runs
	closer func() error
}

// KeyPrefix is the Locker's key prefix for a run, so that runs sharing a
// database do not wait for each other's locks.
func KeyPrefix(run string) string { return "kannuki_example/" + run }

// Open opens the backend and the database the flags name.
func (c *Config) Open(ctx context.Context) (*Env, error) {
	if !runID.MatchString(c.Run) {
		return nil, fmt.Errorf("-run %q: want 1 to 40 of [a-z0-9_]", c.Run)
	}
	if c.Workers < 1 {
		return nil, fmt.Errorf("-workers %d: want at least 1", c.Workers)
	}
	dialect, driver := Postgres, "pgx"
	if c.Backend == MySQL {
		dialect, driver = MySQL, "mysql"
	}
	if c.DSN == "" {
		c.DSN = DefaultDSN(dialect)
	}
	db, err := sql.Open(driver, c.DSN)
	if err != nil {
		return nil, err
	}
	// Room for every worker to hold a lock's connection and use another.
	db.SetMaxOpenConns(2*c.Workers + 2)
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("connect to %s: %w", dialect, err)
	}

	var backend store.Backend
	switch c.Backend {
	case Postgres, None:
		backend = kannukipg.New(db, kannukipg.Options{})
	case MySQL:
		backend = kannukimysql.New(db, kannukimysql.Options{})
	case File:
		fb, err := kannukifile.New(c.LockDir, kannukifile.Options{})
		if err != nil {
			db.Close()
			return nil, err
		}
		backend = fb
	default:
		db.Close()
		return nil, fmt.Errorf("-backend %q: want pg, mysql, file or none", c.Backend)
	}
	e := &Env{
		Config: *c,
		Locker: kannuki.New(backend, kannuki.Options{KeyPrefix: KeyPrefix(c.Run)}),
		Store:  backend,
		DB:     db,
		Pid:    os.Getpid(),
		// Setting up stays locked with -backend none: it is not what the
		// example is about, and two processes creating the same orders
		// would only confuse the picture.
		setup:  kannuki.New(backend, kannuki.Options{KeyPrefix: KeyPrefix(c.Run)}),
		schema: kannuki.New(backend, kannuki.Options{KeyPrefix: "kannuki_example"}),
		closer: db.Close,
	}
	if c.Backend == None {
		e.Store = noLocks{}
		e.Locker = kannuki.New(e.Store, kannuki.Options{KeyPrefix: KeyPrefix(c.Run)})
	}
	e.Data = e.On(db)
	return e, nil
}

// DefaultDSN is the DSN used when -dsn is empty, for dialect pg or mysql.
func DefaultDSN(dialect string) string {
	if dialect == MySQL {
		return envOr("KANNUKI_MYSQL_DSN", DefaultMySQLDSN)
	}
	return envOr("KANNUKI_PG_DSN", DefaultPostgresDSN)
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

// Close closes the database pool.
func (e *Env) Close() error { return e.closer() }

// On returns SQL running statements on q (the pool, a *sql.Tx, a *sql.Conn).
func (e *Env) On(q Querier) SQL { return SQL{q: q, postgres: e.Backend != MySQL} }

// Exclusive runs fn alone among all processes of the run that call it
// with the same key: in a transaction holding a transaction-scoped lock
// where the backend can run one (store.TxRunner: pg, mysql), else under
// a session lock with fn's statements on the pool (file).
func (e *Env) Exclusive(ctx context.Context, key string, fn func(ctx context.Context, db SQL) error) error {
	return exclusive(ctx, e, e.setup, key, fn)
}

// Schema runs the CREATE ... IF NOT EXISTS statements that set up an
// example's tables, one process at a time: PostgreSQL fails a CREATE TABLE
// IF NOT EXISTS that races another one.
func (e *Env) Schema(ctx context.Context, stmts ...string) error {
	return exclusive(ctx, e, e.schema, "schema", func(ctx context.Context, db SQL) error {
		for _, s := range stmts {
			if _, err := db.Exec(ctx, s); err != nil {
				return fmt.Errorf("schema: %w", err)
			}
		}
		return nil
	})
}

func exclusive(ctx context.Context, e *Env, l *kannuki.Locker, key string, fn func(ctx context.Context, db SQL) error) error {
	if _, ok := e.Store.(store.TxRunner[*sql.Tx]); ok {
		return kannuki.InTx(ctx, l, key, func(ctx context.Context, tx *sql.Tx) error {
			return fn(ctx, e.On(tx))
		})
	}
	return l.WithLock(ctx, key, func(ctx context.Context) error { return fn(ctx, e.Data) })
}

// WaitStart sleeps until the -start time, if one was given.
func (e *Env) WaitStart(ctx context.Context) error {
	if e.Start == 0 {
		return nil
	}
	t := time.NewTimer(time.Until(time.UnixMilli(e.Start)))
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Summary prints the one-line summary "name: backend=... run=... k=v ...";
// the tests read it.
func (e *Env) Summary(name string, kv ...any) {
	var b strings.Builder
	fmt.Fprintf(&b, "%s: backend=%s run=%s pid=%d workers=%d", name, e.Backend, e.Run, e.Pid, e.Workers)
	for i := 0; i+1 < len(kv); i += 2 {
		fmt.Fprintf(&b, " %v=%v", kv[i], kv[i+1])
	}
	fmt.Println(b.String())
}

// Fatal prints err and exits with status 1.
func Fatal(name string, err error) {
	fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
	os.Exit(1)
}
