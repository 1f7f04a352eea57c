package mysql

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kannuki-go/kannuki"
	"github.com/kannuki-go/kannuki/kannukimysql"
)

// InTx on MariaDB: GET_LOCK on the transaction's connection, released after
// COMMIT, so each worker sees the previous one's committed row. The
// counter table has no constraint that would hide a lost update.
func TestInTxSequentialNumbers(t *testing.T) {
	forEachVariant(t, func(t *testing.T, v variant) {
		b, db := newBackend(t, v, 20, kannukimysql.Options{})
		l := kannuki.New(b, kannuki.Options{})
		table := "kannuki_test_seq_" + randSuffix()
		ctx := context.Background()
		if _, err := db.ExecContext(ctx, "CREATE TABLE "+table+" (n INT NOT NULL)"); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.ExecContext(context.Background(), "DROP TABLE "+table) })
		key := uniqueKey(t).String

		const workers, each = 8, 25
		var wg sync.WaitGroup
		errs := make(chan error, workers)
		for w := 0; w < workers; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; i < each; i++ {
					err := kannuki.InTx(ctx, l, key, func(ctx context.Context, tx *sql.Tx) error {
						var last int
						if err := tx.QueryRowContext(ctx, "SELECT COALESCE(MAX(n), 0) FROM "+table).Scan(&last); err != nil {
							return err
						}
						_, err := tx.ExecContext(ctx, "INSERT INTO "+table+" (n) VALUES (?)", last+1)
						return err
					})
					if err != nil {
						errs <- err
						return
					}
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		var count, distinct, maxN int
		if err := db.QueryRowContext(ctx, "SELECT COUNT(*), COUNT(DISTINCT n), MAX(n) FROM "+table).Scan(&count, &distinct, &maxN); err != nil {
			t.Fatal(err)
		}
		if count != workers*each || distinct != count || maxN != count {
			t.Fatalf("numbers: %d rows, %d distinct, max %d; want 1..%d", count, distinct, maxN, workers*each)
		}
	})
}

func TestInTxRollbackAndRelease(t *testing.T) {
	v := variants[0]
	b, db := newBackend(t, v, 4, kannukimysql.Options{})
	l := kannuki.New(b, kannuki.Options{})
	obs := newObserver(t)
	ctx := context.Background()
	table := "kannuki_test_rb_" + randSuffix()
	if _, err := db.ExecContext(ctx, "CREATE TABLE "+table+" (n INT) ENGINE=InnoDB"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.ExecContext(context.Background(), "DROP TABLE "+table) })
	k := uniqueKey(t)

	want := errors.New("fn failed")
	err := kannuki.InTx(ctx, l, k.String, func(ctx context.Context, tx *sql.Tx) error {
		if obs.owner(t, k) == 0 {
			t.Error("lock not held during the transaction")
		}
		if _, err := tx.ExecContext(ctx, "INSERT INTO "+table+" VALUES (1)"); err != nil {
			return err
		}
		return want
	})
	if !errors.Is(err, want) {
		t.Fatalf("got %v", err)
	}
	var n int
	db.QueryRowContext(ctx, "SELECT COUNT(*) FROM "+table).Scan(&n)
	if n != 0 {
		t.Fatal("the failed transaction was committed")
	}
	if obs.owner(t, k) != 0 {
		t.Fatal("lock still held after the rollback")
	}

	func() {
		defer func() {
			if r := recover(); r != "boom" {
				t.Fatalf("recovered %v", r)
			}
		}()
		_ = kannuki.InTx(ctx, l, k.String, func(context.Context, *sql.Tx) error { panic("boom") })
	}()
	if obs.owner(t, k) != 0 {
		t.Fatal("lock still held after a panic")
	}

	// Held elsewhere: fn does not run.
	h, err := l.Acquire(ctx, k.String)
	if err != nil {
		t.Fatal(err)
	}
	err = kannuki.InTx(ctx, l, k.String, func(context.Context, *sql.Tx) error {
		t.Error("fn ran without the lock")
		return nil
	}, kannuki.Timeout(50*time.Millisecond))
	if !errors.Is(err, kannuki.ErrNotAcquired) {
		t.Fatalf("held: %v", err)
	}
	h.Release(ctx)
}

func TestLockTxUnsupported(t *testing.T) {
	b, db := newBackend(t, variants[0], 4, kannukimysql.Options{})
	l := kannuki.New(b, kannuki.Options{})
	ctx := context.Background()
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	err = kannuki.LockTx(ctx, l, tx, fmt.Sprintf("k-%s", randSuffix()))
	if !errors.Is(err, kannuki.ErrUnsupported) || len(err.Error()) < 60 {
		t.Fatalf("LockTx on MySQL: %v; want a clear ErrUnsupported", err)
	}
}

// TestInTxOptions: kannuki.TxOptions reach the transaction InTx opens (a
// read-only one refuses a write), and options of a type the backend does
// not take are refused before anything runs.
func TestInTxOptions(t *testing.T) {
	b, db := newBackend(t, variants[0], 4, kannukimysql.Options{})
	l := kannuki.New(b, kannuki.Options{})
	ctx := context.Background()
	table := "kannuki_test_ro_" + randSuffix()
	if _, err := db.ExecContext(ctx, "CREATE TABLE "+table+" (n INT) ENGINE=InnoDB"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.ExecContext(context.Background(), "DROP TABLE "+table) })
	k := uniqueKey(t)

	var writeErr error
	err := kannuki.InTx(ctx, l, k.String, func(ctx context.Context, tx *sql.Tx) error {
		_, writeErr = tx.ExecContext(ctx, "INSERT INTO "+table+" VALUES (1)")
		return nil
	}, kannuki.TxOptions(&sql.TxOptions{ReadOnly: true}))
	if err != nil {
		t.Fatalf("InTx with TxOptions: %v", err)
	}
	if writeErr == nil || !strings.Contains(writeErr.Error(), "READ ONLY") {
		t.Fatalf("a write inside a read-only InTx: %v, want the server's READ ONLY error", writeErr)
	}
	err = kannuki.InTx(ctx, l, k.String, func(context.Context, *sql.Tx) error {
		t.Error("fn ran with options of the wrong type")
		return nil
	}, kannuki.TxOptions(sql.LevelSerializable))
	if !errors.Is(err, kannuki.ErrInvalidArgument) {
		t.Fatalf("InTx with a sql.IsolationLevel as TxOptions: %v, want ErrInvalidArgument", err)
	}
}
