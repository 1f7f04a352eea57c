package mysql

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kannuki-go/kannuki/store"

	"github.com/go-sql-driver/mysql"

	"github.com/kannuki-go/kannuki"
	"github.com/kannuki-go/kannuki/internal/testdb"
	"github.com/kannuki-go/kannuki/kannukimysql"
)

// limitedUser creates a server account that may hold at most n
// connections (WITH MAX_USER_CONNECTIONS: a limit of its own, so filling
// it starves no other test of the shared server's max_connections) and
// returns a DSN for it. The account, and any session of it left, is gone
// at the end of the test.
func limitedUser(t *testing.T, n int) string {
	t.Helper()
	admin := openDB(t, testdb.MySQLDSN(), 2)
	cfg, err := mysql.ParseDSN(testdb.MySQLDSN())
	if err != nil {
		t.Fatal(err)
	}
	user, pw := "kannuki_cap_"+randSuffix(), randSuffix()
	ctx, cancel := guard()
	defer cancel()
	if _, err := admin.ExecContext(ctx, fmt.Sprintf("CREATE USER '%s'@'%%' IDENTIFIED BY '%s' WITH MAX_USER_CONNECTIONS %d", user, pw, n)); err != nil {
		t.Fatalf("create user: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := guard()
		defer cancel()
		rows, err := admin.QueryContext(ctx, "SELECT ID FROM information_schema.PROCESSLIST WHERE USER = ?", user)
		if err == nil {
			var ids []int64
			for rows.Next() {
				var id int64
				if rows.Scan(&id) == nil {
					ids = append(ids, id)
				}
			}
			rows.Close()
			for _, id := range ids {
				_, _ = admin.ExecContext(ctx, "KILL "+strconv.FormatInt(id, 10))
			}
		}
		if _, err := admin.ExecContext(ctx, fmt.Sprintf("DROP USER '%s'@'%%'", user)); err != nil {
			t.Errorf("drop user %s: %v", user, err)
		}
	})
	if db := cfg.DBName; db != "" {
		if _, err := admin.ExecContext(ctx, fmt.Sprintf("GRANT SELECT ON `%s`.* TO '%s'@'%%'", db, user)); err != nil {
			t.Fatalf("grant: %v", err)
		}
	}
	cfg.User, cfg.Passwd = user, pw
	return cfg.FormatDSN()
}

// TestCapacity (#14 item 4): a process holding one lock per connection
// runs into the server's connection limit first. With an account limited
// to 12 connections and a pool without a bound, the 13th lock fails with
// an error matching ErrCapacity (Reason capacity) that names the setting
// and the Locker's count; all 12 locks are still held (seen from another
// account's session) and none was reported lost; a lock released makes
// room for the next.
func TestCapacity(t *testing.T) {
	const n = 12
	dsn := limitedUser(t, n)
	db := openDB(t, dsn, 0)
	b := kannukimysql.New(db, kannukimysql.Options{})
	locker := kannuki.New(b, kannuki.Options{})
	obs := newObserver(t)
	ctx, cancel := guard()
	defer cancel()

	var hs []*kannuki.Handle
	var keys []store.Key
	var refusal error
	for i := 0; i < 4*n && refusal == nil; i++ {
		k := uniqueKey(t, strconv.Itoa(i))
		h, err := locker.Acquire(ctx, k.String, kannuki.Timeout(10*time.Second))
		if err != nil {
			refusal = err
			break
		}
		hs, keys = append(hs, h), append(keys, k)
	}
	defer func() {
		for _, h := range hs {
			_ = h.Release(context.Background())
		}
	}()
	t.Logf("held %d locks; then: %v", len(hs), refusal)
	var na *kannuki.NotAcquiredError
	switch {
	case refusal == nil:
		t.Fatalf("%d locks held on an account limited to %d connections, no refusal", len(hs), n)
	case !errors.Is(refusal, kannuki.ErrCapacity) || !errors.As(refusal, &na) || na.Reason != kannuki.ReasonCapacity:
		t.Fatalf("refusal: %v, want ErrCapacity with ReasonCapacity", refusal)
	case !strings.Contains(refusal.Error(), "MAX_USER_CONNECTIONS") ||
		!strings.Contains(refusal.Error(), fmt.Sprintf("this Locker holds %d locks", len(hs))):
		t.Fatalf("refusal %q does not name the setting and the count", refusal)
	case len(hs) != n:
		t.Fatalf("refused after %d locks, want %d (one connection each)", len(hs), n)
	}
	for i, k := range keys {
		if obs.owner(t, k) == 0 {
			t.Fatalf("lock %d (%q) no longer held after the refusal", i, k.String)
		}
		if err := hs[i].Err(); err != nil {
			t.Fatalf("lock %d reported lost: %v", i, err)
		}
	}
	if s := locker.Stats(); s.Lost != 0 || s.NotCapacity != 1 {
		t.Fatalf("stats: %d lost, %d capacity refusals; want 0 and 1", s.Lost, s.NotCapacity)
	}
	// Room for one more once one is given back.
	if err := hs[0].Release(ctx); err != nil {
		t.Fatalf("Release: %v", err)
	}
	obs.waitFree(t, keys[0])
	h, err := locker.Acquire(ctx, keys[0].String, kannuki.Timeout(10*time.Second))
	if err != nil {
		t.Fatalf("Acquire after a release: %v", err)
	}
	hs[0] = h
	for i, h := range hs {
		if err := h.Release(ctx); err != nil {
			t.Fatalf("Release %d: %v", i, err)
		}
	}
	hs = nil
}

// TestCapacityFill measures what breaks first when one process takes
// ever more locks on a server of its own: set KANNUKI_MYSQL_FILL_DSN to
// a throwaway server (never the shared one: the fill takes every
// connection it allows) and KANNUKI_MYSQL_FILL_MAX to the most locks to
// try (default 100,000). It logs the count, the error, the time and the
// client's memory.
func TestCapacityFill(t *testing.T) {
	dsn := os.Getenv("KANNUKI_MYSQL_FILL_DSN")
	if dsn == "" {
		t.Skip("set KANNUKI_MYSQL_FILL_DSN to a throwaway server to measure")
	}
	limit := 100_000
	if s := os.Getenv("KANNUKI_MYSQL_FILL_MAX"); s != "" {
		limit, _ = strconv.Atoi(s)
	}
	db, err := sql.Open("mysql", dsn)
	if err != nil {
		t.Fatal(err)
	}
	db = readyDB(t, db, 0)
	var maxConns int
	_ = db.QueryRow("SELECT @@max_connections").Scan(&maxConns)
	locker := kannuki.New(kannukimysql.New(db, kannukimysql.Options{}), kannuki.Options{KeepaliveInterval: -1})
	ctx := context.Background()
	var hs []*kannuki.Handle
	defer func() {
		for _, h := range hs {
			_ = h.Release(ctx)
		}
	}()
	start := time.Now()
	var refusal error
	for i := range limit {
		h, err := locker.Acquire(ctx, "fill/"+strconv.Itoa(i), kannuki.Timeout(10*time.Second))
		if err != nil {
			refusal = err
			break
		}
		hs = append(hs, h)
	}
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	t.Logf("max_connections %d: held %d locks in %s; client heap %d MiB, sys %d MiB, %d goroutines; then: %v",
		maxConns, len(hs), time.Since(start).Round(time.Millisecond), ms.HeapAlloc>>20, ms.Sys>>20, runtime.NumGoroutine(), refusal)
	if refusal != nil && !errors.Is(refusal, kannuki.ErrCapacity) {
		t.Errorf("the refusal does not match ErrCapacity: %v", refusal)
	}
	lost := 0
	for _, h := range hs {
		if h.Err() != nil {
			lost++
		}
	}
	if lost != 0 {
		t.Errorf("%d locks lost", lost)
	}
}
