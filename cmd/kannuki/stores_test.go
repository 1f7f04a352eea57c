package main

import (
	"context"
	"database/sql"
	"fmt"
	"net/url"
	"testing"
	"time"

	"github.com/kannuki-go/kannuki/keys"
	kstore "github.com/kannuki-go/kannuki/store"

	"github.com/go-sql-driver/mysql"
	_ "github.com/jackc/pgx/v5/stdlib" // the "pgx" database/sql driver
	"github.com/kannuki-go/kannuki/internal/testdb"
)

// storeCase is one lock store the CLI is tested against.
type storeCase struct {
	name string
	// dsn is given to kannuki with --dsn ("" = the embedded file store).
	dsn string
	// waiters: "kannuki status --json" lists sessions waiting for a key.
	waiters bool
	// kill ends the database session holding key, as a DBA or a failover
	// would; nil for the file store, whose locks cannot be lost.
	kill func(t *testing.T, key string)
}

// args returns the --dsn flag for the store, if any, followed by more.
func (s storeCase) args(more ...string) []string {
	if s.dsn == "" {
		return more
	}
	return append([]string{"--dsn", s.dsn}, more...)
}

// forEachStore runs f against the file store, PostgreSQL and MariaDB. A
// database that cannot be reached skips its cases (fails in CI).
func forEachStore(t *testing.T, f func(t *testing.T, s storeCase)) {
	t.Run("file", func(t *testing.T) { f(t, storeCase{name: "file"}) })
	t.Run("postgres", func(t *testing.T) { f(t, postgresStore(t)) })
	t.Run("mysql", func(t *testing.T) { f(t, mysqlStore(t)) })
}

func openDB(t *testing.T, what, driver, dsn string) *sql.DB {
	t.Helper()
	db, err := sql.Open(driver, dsn)
	if err != nil {
		testdb.Unavailable(t, what, err)
	}
	t.Cleanup(func() { db.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := db.PingContext(ctx); err != nil {
		testdb.Unavailable(t, what, err)
	}
	return db
}

func derive(t *testing.T, key string) kstore.Key {
	t.Helper()
	k, err := keys.Ruby{}.Derive("", key)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func postgresStore(t *testing.T) storeCase {
	dsn := testdb.PostgresDSN()
	db := openDB(t, "PostgreSQL", "pgx", dsn)
	return storeCase{
		name:    "postgres",
		dsn:     dsn,
		waiters: true,
		kill: func(t *testing.T, key string) {
			t.Helper()
			classid, objid := keys.ClassObjID(derive(t, key).ID)
			var n int
			err := db.QueryRow(`SELECT count(pg_terminate_backend(pid)) FROM pg_locks
				WHERE locktype = 'advisory' AND granted AND objsubid = 1 AND classid = $1 AND objid = $2
				AND database = (SELECT oid FROM pg_database WHERE datname = current_database())`,
				int64(classid), int64(objid)).Scan(&n)
			if err != nil || n != 1 {
				t.Fatalf("terminating the holder of %q: %d sessions, %v", key, n, err)
			}
		},
	}
}

// mysqlURL turns the test MySQL DSN (go-sql-driver form) into the mysql://
// URL the CLI takes.
func mysqlURL(t *testing.T) string {
	cfg, err := mysql.ParseDSN(testdb.MySQLDSN())
	if err != nil {
		t.Fatalf("KANNUKI_MYSQL_DSN: %v", err)
	}
	u := url.URL{Scheme: "mysql", Host: cfg.Addr, Path: "/" + cfg.DBName}
	switch {
	case cfg.Passwd != "":
		u.User = url.UserPassword(cfg.User, cfg.Passwd)
	case cfg.User != "":
		u.User = url.User(cfg.User)
	}
	return u.String()
}

func mysqlStore(t *testing.T) storeCase {
	db := openDB(t, "MariaDB", "mysql", testdb.MySQLDSN())
	return storeCase{
		name:    "mysql",
		dsn:     mysqlURL(t),
		waiters: true,
		kill: func(t *testing.T, key string) {
			t.Helper()
			var id sql.NullInt64
			if err := db.QueryRow("SELECT IS_USED_LOCK(?)", derive(t, key).Name).Scan(&id); err != nil || !id.Valid {
				t.Fatalf("finding the holder of %q: %v (valid %v)", key, err, id.Valid)
			}
			if _, err := db.Exec(fmt.Sprintf("KILL %d", id.Int64)); err != nil {
				t.Fatalf("KILL %d: %v", id.Int64, err)
			}
		},
	}
}
