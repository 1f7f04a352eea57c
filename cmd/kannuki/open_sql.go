package main

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	kstore "github.com/kannuki-go/kannuki/store"

	"github.com/go-sql-driver/mysql"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/kannuki-go/kannuki/kannukimysql"
	"github.com/kannuki-go/kannuki/kannukipg"
)

// openPostgres opens PostgreSQL through pgx's database/sql driver.
func (a *app) openPostgres(ctx context.Context, t *target) (*store, error) {
	cfg, err := pgx.ParseConfig(t.pgURL)
	if err != nil {
		// pgx masks the password in its message; the redactor would too.
		return nil, fmt.Errorf("kannuki: postgres DSN: %w", err)
	}
	db := stdlib.OpenDB(*cfg)
	// The literal form puts the key, in a comment, into the lock statement
	// itself, so pg_stat_activity (and "kannuki locks" on any host) shows
	// the key of a lock kannuki holds, not only its number; the default
	// form for pgx would show it only after the first keepalive, or never
	// with --keepalive 0. One lock per process makes the extra parsing free.
	return a.openSQL(ctx, t, db, kannukipg.New(db, kannukipg.Options{Form: kannukipg.FormLiteral}))
}

// openMySQL opens MySQL/MariaDB through go-sql-driver/mysql. The
// configuration goes to the driver as a Config, never as a DSN string, so a
// password with any character in it arrives intact.
func (a *app) openMySQL(ctx context.Context, t *target) (*store, error) {
	// The driver logs some connection trouble itself, as "[mysql] date
	// file.go:line ..."; kannuki reports the errors it returns instead.
	t.my.Logger = mysql.Logger(quietLogger{})
	conn, err := mysql.NewConnector(t.my)
	if err != nil {
		return nil, fmt.Errorf("kannuki: mysql DSN: %w", err)
	}
	db := sql.OpenDB(conn)
	st, err := a.openSQL(ctx, t, db, kannukimysql.New(db, kannukimysql.Options{}))
	if err != nil {
		return nil, err
	}
	st.holder = func(ctx context.Context, k kstore.Key) (*kstore.LockInfo, error) { return mysqlHolder(ctx, db, k) }
	st.locksNote = func(ctx context.Context) string { return mysqlLocksNote(ctx, db) }
	return st, nil
}

// mysqlHolder asks the server who holds k: IS_USED_LOCK gives the
// connection id, the process list its client address. kannukimysql's
// Locks sees a lock nobody waits for only when the performance schema (or
// MariaDB's metadata_lock_info plugin) is on; this works everywhere.
func mysqlHolder(ctx context.Context, db *sql.DB, k kstore.Key) (*kstore.LockInfo, error) {
	var id sql.NullInt64
	// The name as the exact UTF-8 bytes of the key, as kannukimysql locks it.
	if err := db.QueryRowContext(ctx, "SELECT IS_USED_LOCK(CONVERT(CAST(? AS BINARY) USING utf8mb4))", k.Name).Scan(&id); err != nil {
		return nil, fmt.Errorf("kannuki: mysql: IS_USED_LOCK: %w", err)
	}
	if !id.Valid {
		return nil, nil
	}
	li := &kstore.LockInfo{Name: k.Name, Mode: kstore.ModeExclusive, Granted: true, PID: id.Int64}
	var host sql.NullString
	err := db.QueryRowContext(ctx, "SELECT HOST FROM information_schema.PROCESSLIST WHERE ID = ?", id.Int64).Scan(&host)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("kannuki: mysql: process list: %w", err)
	}
	li.Client = host.String
	return li, nil
}

// quietLogger drops the MySQL driver's own log lines.
type quietLogger struct{}

func (quietLogger) Print(...any) {}
