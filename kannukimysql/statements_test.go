package kannukimysql

import (
	"context"
	"database/sql/driver"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/kannuki-go/kannuki/keys"
	"github.com/kannuki-go/kannuki/store"
)

func TestTimeoutLiteral(t *testing.T) {
	cases := []struct {
		d     time.Duration
		whole bool
		want  string
		cut   bool
	}{
		{0, false, "0", false},
		{-time.Second, false, "0", false},
		{time.Nanosecond, false, "0.000001", false},
		{time.Microsecond, false, "0.000001", false},
		{time.Microsecond + 1, false, "0.000002", false},
		{250 * time.Millisecond, false, "0.250000", false},
		{1500 * time.Millisecond, false, "1.500000", false},
		{time.Hour, false, "3600.000000", false},
		{time.Nanosecond, true, "1", true},
		{300 * time.Millisecond, true, "1", true},
		{time.Second, true, "1", false},
		{1001 * time.Millisecond, true, "2", true},
		{time.Hour, true, "3600", false},
	}
	for _, c := range cases {
		lit, cut := serverWait(c.d, c.whole)
		if lit != c.want || cut != c.cut {
			t.Errorf("serverWait(%s, %v) = %q %v, want %q %v", c.d, c.whole, lit, cut, c.want, c.cut)
		}
	}
}

func TestStatementsEncodeNames(t *testing.T) {
	for _, name := range []string{"my_lock", "it's", `a\'b`, "'); DROP TABLE x; --", "*/", "鍵/🔒", "?"} {
		for _, q := range []string{textStmt(stmtTry, name), textStmt(stmtRelease, name), textStmt(stmtCheck, name), textStmt(stmtRelock, name), waitStmt(name, "1.000000"), heldStmt(name)} {
			if strings.Contains(q, name) && name != "?" {
				t.Fatalf("%q spliced into %q", name, q)
			}
			literals := strings.Count(q, "X'")
			if literals < 1 || strings.Count(q, "'") != 2*literals {
				t.Fatalf("statement %q has quotes other than the hex literal's", q)
			}
		}
		got, ok := parseWaitName(waitStmt(name, "3600.000000"))
		if !ok || got != name {
			t.Fatalf("parseWaitName(waitStmt(%q)) = %q %v", name, got, ok)
		}
	}
	for kind, p := range preparedText {
		if strings.Count(p, "?") != nameParams(stmtKind(kind)) {
			t.Fatalf("prepared statement %q takes %d names", p, nameParams(stmtKind(kind)))
		}
	}
}

func TestParseWaitName(t *testing.T) {
	cases := map[string]string{
		"SELECT GET_LOCK('plain', 10)":                       "plain",
		"select get_lock( 'it''s' ,1)":                       "it's",
		`SELECT GET_LOCK('a\'b\\c\n', 1)`:                    "a'b\\c\n",
		`SELECT GET_LOCK("dq", 1)`:                           "dq",
		"SELECT GET_LOCK(CONVERT(X'6d79' USING utf8mb4), 1)": "my",
		"select GET_LOCK(convert(x'6D79' using utf8mb4), 1)": "my",
	}
	for info, want := range cases {
		if got, ok := parseWaitName(info); !ok || got != want {
			t.Errorf("parseWaitName(%q) = %q %v, want %q", info, got, ok, want)
		}
	}
	for _, info := range []string{"", "SELECT GET_LOCK(?, ?)", "SELECT SLEEP(1)", "SELECT GET_LOCK('unterminated", "SELECT GET_LOCK(CONVERT(X'zz' USING utf8mb4), 1)"} {
		if got, ok := parseWaitName(info); ok {
			t.Errorf("parseWaitName(%q) = %q, want no name", info, got)
		}
	}
}

func TestLockName(t *testing.T) {
	ok := []string{"a", strings.Repeat("x", 64), strings.Repeat("é", 64), strings.Repeat("🔒", 48)}
	for _, n := range ok {
		if got, err := lockName(store.Key{String: n, Name: n}); err != nil || got != n {
			t.Errorf("lockName(%q) = %q %v", n, got, err)
		}
	}
	bad := []string{"", "a\x00b", "\xff", strings.Repeat("x", 65), strings.Repeat("🔒", 49)}
	for _, n := range bad {
		if _, err := lockName(store.Key{String: n, Name: n}); !errors.Is(err, store.ErrInvalidKey) {
			t.Errorf("lockName(%q): %v, want ErrInvalidKey", n, err)
		}
	}
	// The default scheme's names always pass.
	for _, k := range []string{"k", strings.Repeat("long", 100), strings.Repeat("🔒", 100), strings.Repeat("é", 40)} {
		key, err := keys.Ruby{}.Derive("prefix", k)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := lockName(key); err != nil {
			t.Errorf("RubyKeys name %q rejected: %v", key.Name, err)
		}
	}
}

// serverErr looks like go-sql-driver/mysql's *MySQLError.
type serverErr struct {
	Number  uint16
	Message string
}

func (e *serverErr) Error() string { return fmt.Sprintf("Error %d: %s", e.Number, e.Message) }

type plainErr string

func (e plainErr) Error() string { return string(e) }

func TestErrNumber(t *testing.T) {
	cases := []struct {
		err  error
		want int
	}{
		{nil, 0},
		{errors.New("boom"), 0},
		{&serverErr{Number: 1213}, 1213},
		{fmt.Errorf("wrapped: %w", &serverErr{Number: 3058}), 3058},
		{errors.Join(errors.New("x"), &serverErr{Number: 1059}), 1059},
		{plainErr("Error 1094 (HY000): Unknown thread id: 5"), 1094},
		{fmt.Errorf("ctx: %w", plainErr("Error 1243: Unknown prepared statement handler")), 1243},
		{plainErr("kannuki: Error 5 here"), 0},
	}
	for _, c := range cases {
		if got := errNumber(c.err); got != c.want {
			t.Errorf("errNumber(%v) = %d, want %d", c.err, got, c.want)
		}
	}
	if !isDeadlock(&serverErr{Number: 1213}) || !isDeadlock(&serverErr{Number: 3058}) || isDeadlock(&serverErr{Number: 1205}) {
		t.Error("isDeadlock")
	}
	if !connBroken(context.Canceled) || !connBroken(driver.ErrBadConn) || connBroken(&serverErr{Number: 1213}) || !connBroken(&serverErr{Number: 1927}) {
		t.Error("connBroken")
	}
	if !isServerError(&serverErr{Number: 1317}) || isServerError(errors.New("x")) {
		t.Error("isServerError")
	}
}

func TestAsInt(t *testing.T) {
	cases := []struct {
		v    driver.Value
		n    int64
		null bool
		err  bool
	}{
		{nil, 0, true, false},
		{int64(1), 1, false, false},
		{uint64(7), 7, false, false},
		{[]byte("1"), 1, false, false},
		{"0", 0, false, false},
		{[]byte("x"), 0, false, true},
		{true, 0, false, true},
	}
	for _, c := range cases {
		n, null, err := asInt(c.v)
		if n != c.n || null != c.null || (err != nil) != c.err {
			t.Errorf("asInt(%v) = %d %v %v", c.v, n, null, err)
		}
	}
}

func TestSessionsCacheBounded(t *testing.T) {
	var c sessions
	keys := make([]*int, 10)
	for i := range keys {
		keys[i] = new(int)
		c.put(&session{key: keys[i], id: int64(i)}, 4)
		if i == 1 {
			c.get(keys[0]) // keys[0] recently used: keys[1] goes first
		}
	}
	if n := c.len(); n != 4 {
		t.Fatalf("%d entries, want 4", n)
	}
	if c.get(keys[9]) == nil || c.get(keys[1]) != nil {
		t.Fatal("least recently used entries were not the ones dropped")
	}
	s := c.get(keys[9])
	c.drop(s)
	if c.get(keys[9]) != nil {
		t.Fatal("drop")
	}
	if !cacheable(keys[0]) || cacheable(struct{}{}) || cacheable(nil) {
		t.Fatal("cacheable")
	}
}

func TestAcquireRejectsBeforeAnyStatement(t *testing.T) {
	b := New(nil, Options{})
	ctx := context.Background()
	if _, err := b.Acquire(ctx, store.Key{Name: "k"}, store.Request{}); !errors.Is(err, store.ErrInvalidArgument) {
		t.Fatalf("nil db: %v", err)
	}
	if _, err := b.Held(ctx, store.Key{Name: "k"}); !errors.Is(err, store.ErrInvalidArgument) {
		t.Fatalf("nil db Held: %v", err)
	}
	if _, err := b.Locks(ctx); !errors.Is(err, store.ErrInvalidArgument) {
		t.Fatalf("nil db Locks: %v", err)
	}
}
