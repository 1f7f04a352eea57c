package kannukipg

import (
	"context"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/kannuki-go/kannuki/store"

	"github.com/kannuki-go/kannuki/internal/pgsql"
)

// These tests need no database; the integration module tests kannukipg
// against PostgreSQL with pgx/stdlib and lib/pq.

func TestExecForm(t *testing.T) {
	for in, want := range map[string]string{
		"SELECT pg_try_advisory_lock(42) /* kannuki: k */": "SELECT 1 WHERE pg_try_advisory_lock(42) /* kannuki: k */",
		"SELECT EXISTS (SELECT 1)":                         "SELECT 1 WHERE EXISTS (SELECT 1)",
		"VALUES (true)":                                    "SELECT 1 FROM (VALUES (true)) AS kannuki(ok) WHERE ok",
	} {
		if got := execForm(in); got != want {
			t.Errorf("execForm(%q) = %q, want %q", in, got, want)
		}
	}
	for op := range 2 {
		for s := range 2 {
			for p := range 2 {
				q := fastSQL[op][s][p]
				if !strings.HasPrefix(q, "SELECT 1 WHERE pg_") || strings.Count(q, "$") != p+1 {
					t.Errorf("fastSQL[%d][%d][%d] = %q", op, s, p, q)
				}
				if (s == 1) != strings.Contains(q, "_shared(") {
					t.Errorf("fastSQL[%d][%d][%d] = %q: mode", op, s, p, q)
				}
			}
		}
	}
}

// TestCommentKey: whatever the key, the comment kannukipg sends is valid
// UTF-8 (PostgreSQL rejects a statement that is not, comments included),
// cannot be closed early, and keeps short keys readable.
func TestCommentKey(t *testing.T) {
	keys := []string{
		"plain",
		strings.Repeat("é", 300),
		strings.Repeat("日本", 200),
		strings.Repeat("*/", 500),
		"a\x00b\xff\xfe */ DROP TABLE x; --",
		strings.Repeat("%", 100) + "🔒",
		strings.Repeat("x", 1<<20),
	}
	for _, key := range keys {
		c := pgsql.Comment(key)
		if !utf8.ValidString(c) {
			t.Errorf("comment of %.20q is not valid UTF-8", key)
		}
		// PostgreSQL block comments nest: neither "*/" nor "/*" may
		// appear inside, so no '*' at all.
		if !strings.HasPrefix(c, "/* kannuki: ") || !strings.HasSuffix(c, " */") || strings.Contains(c[2:len(c)-2], "*") {
			t.Errorf("comment of %.20q can end early or nest: %q", key, c)
		}
		if len(c) > 230 {
			t.Errorf("comment of %.20q is %d bytes", key, len(c))
		}
		if short := len(key) < 60 && utf8.ValidString(key) && !strings.ContainsAny(key, "*%\\\x00"); short && !strings.Contains(c, key) {
			t.Errorf("short key %q not shown as is in %q", key, c)
		}
	}
	if got := checkSQL(store.Key{String: "a*/b"}); got != "SELECT 1 /* kannuki: a%2A/b */" {
		t.Errorf("checkSQL = %q", got)
	}
}

type stateErr string

func (e stateErr) Error() string    { return "server error " + string(e) }
func (e stateErr) SQLState() string { return string(e) }

func TestSQLState(t *testing.T) {
	wrapped := fmt.Errorf("exec: %w", stateErr(pgsql.CodeLockNotAvailable))
	if got := sqlState(wrapped); got != "55P03" {
		t.Errorf("sqlState = %q", got)
	}
	if got := sqlState(io.EOF); got != "" {
		t.Errorf("sqlState(EOF) = %q", got)
	}
	for err, gone := range map[error]bool{
		stateErr("57P01"):                 true,
		stateErr("08006"):                 true,
		stateErr("57014"):                 false,
		stateErr("55P03"):                 false,
		driver.ErrBadConn:                 true,
		fmt.Errorf("x: %w", io.EOF):       true,
		context.DeadlineExceeded:          false,
		errors.New("conn closed"):         true,
		errors.New("something unrelated"): false,
	} {
		if got := sessionGone(err); got != gone {
			t.Errorf("sessionGone(%v) = %v, want %v", err, got, gone)
		}
	}
}

func TestNewDefaults(t *testing.T) {
	b := New(nil, Options{})
	if b.releaseTimeout != DefaultReleaseTimeout || b.connWait != DefaultConnWait || b.Form() != FormPrepared {
		t.Errorf("New(nil, {}) = %+v", b)
	}
	if f := New(nil, Options{Form: FormLiteral}).Form(); f != FormLiteral {
		t.Errorf("FormLiteral resolved to %v", f)
	}
	if f := New(nil, Options{Form: StatementForm(9)}).Form(); f != FormPrepared {
		t.Errorf("unknown form resolved to %v", f)
	}
	if s := StatementForm(9).String(); s != "StatementForm(9)" {
		t.Errorf("String = %q", s)
	}
	k := store.Key{String: "k", ID: 1}
	if _, err := b.Acquire(context.Background(), k, store.Request{}); !errors.Is(err, store.ErrInvalidArgument) {
		t.Errorf("Acquire on a nil *sql.DB: %v", err)
	}
	if _, err := b.Held(context.Background(), k); !errors.Is(err, store.ErrInvalidArgument) {
		t.Errorf("Held on a nil *sql.DB: %v", err)
	}
	if _, err := b.Locks(context.Background()); !errors.Is(err, store.ErrInvalidArgument) {
		t.Errorf("Locks on a nil *sql.DB: %v", err)
	}
}
