package kannukipg

import (
	"context"
	"database/sql"
	"reflect"
	"strconv"
	"strings"

	"github.com/kannuki-go/kannuki/store"

	"github.com/kannuki-go/kannuki/internal/pgsql"
)

// StatementForm selects how the fast-path statements (the first try and the
// unlock) reach the server. Every form costs one round trip per statement
// with the driver it is meant for; they differ in what the server must parse
// and in whether pg_stat_activity shows the key. Waits always use the
// literal form, so a waiting session always shows its key.
type StatementForm uint8

const (
	// FormAuto picks FormBound for pgx/stdlib (v4 and v5), whose
	// per-connection statement cache makes a constant text with bound ids
	// one round trip with no parsing, and FormPrepared for every other
	// driver (lib/pq, wrapped drivers, unknown drivers).
	FormAuto StatementForm = iota
	// FormLiteral sends parameterless statements with the id as an SQL
	// literal and the key in a comment, through ExecContext, reading the
	// boolean from the rows-affected count ("SELECT 1 WHERE
	// pg_try_advisory_lock(42) /* kannuki: key */"). Parameterless
	// statements use the simple protocol on lib/pq and pgx alike: one
	// round trip, nothing prepared, nothing cached per key. The first use
	// on a Backend checks that the driver reports rows affected for SELECT;
	// if it does not, the Backend reads the boolean as a row instead.
	FormLiteral
	// FormBound sends constant texts with the ids bound as $1 (and $2),
	// read through the rows-affected count like FormLiteral. One round
	// trip, with nothing to parse or plan, on drivers that cache prepared
	// statements per connection by text (pgx/stdlib); two on lib/pq, which
	// prepares an unnamed statement for every call. The key does not
	// appear in the try or unlock text; the keepalive statement carries it.
	FormBound
	// FormPrepared prepares the constant texts of FormBound once on each
	// driver connection (through Conn.Raw and the driver's own Prepare)
	// and runs them there: one round trip, nothing to parse or plan, on
	// any driver, lib/pq included. The Backend remembers the statements
	// of up to 256 driver connections.
	FormPrepared
)

func (f StatementForm) String() string {
	switch f {
	case FormAuto:
		return "auto"
	case FormLiteral:
		return "literal"
	case FormBound:
		return "bound"
	case FormPrepared:
		return "prepared"
	}
	return "StatementForm(" + strconv.Itoa(int(f)) + ")"
}

// isPgx reports whether db runs on pgx/stdlib (v4 or v5). The driver is
// recognized by its package path, without importing it; a wrapped driver
// (tracing, metrics) is not recognized and gets the generic treatment.
func isPgx(db *sql.DB) bool {
	t := reflect.TypeOf(db.Driver())
	for t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t == nil {
		return false
	}
	switch t.PkgPath() {
	case "github.com/jackc/pgx/v5/stdlib", "github.com/jackc/pgx/v4/stdlib":
		return true
	}
	return false
}

// Bound texts, indexed by [shared][pair].
var (
	boundTry = [2][2]string{
		{"SELECT pg_try_advisory_lock($1)", "SELECT pg_try_advisory_lock($1, $2)"},
		{"SELECT pg_try_advisory_lock_shared($1)", "SELECT pg_try_advisory_lock_shared($1, $2)"},
	}
	boundUnlock = [2][2]string{
		{"SELECT pg_advisory_unlock($1)", "SELECT pg_advisory_unlock($1, $2)"},
		{"SELECT pg_advisory_unlock_shared($1)", "SELECT pg_advisory_unlock_shared($1, $2)"},
	}
)

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// boundArgs returns the bound ids of k.
func boundArgs(k store.Key) []any {
	if k.Pair {
		return []any{k.K1, k.K2}
	}
	return []any{k.ID}
}

// execForm turns a statement returning one boolean ("SELECT <bool> ...")
// into one that returns a row only when the boolean is true, so that
// ExecContext's rows-affected count carries the answer without a result
// set to read.
func execForm(q string) string {
	if rest, ok := strings.CutPrefix(q, "SELECT "); ok {
		return "SELECT 1 WHERE " + rest
	}
	return "SELECT 1 FROM (" + q + ") AS kannuki(ok) WHERE ok"
}

// checkSQL is the keepalive: one round trip that also keeps the key visible
// in pg_stat_activity.query for the holding session (Locks reads it there).
func checkSQL(k store.Key) string {
	return "SELECT 1 " + pgsql.Comment(k.String)
}

// execer is what *sql.Conn and *sql.DB have in common here.
type execer interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// execBool runs an execForm statement and reads its boolean from the
// rows-affected count.
func execBool(ctx context.Context, e execer, q string, args ...any) (bool, error) {
	res, err := e.ExecContext(ctx, q, args...)
	if err != nil {
		return false, err
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, err
	}
	return n == 1, nil
}

// queryBool runs a statement returning one boolean row.
func queryBool(ctx context.Context, e execer, q string, args ...any) (bool, error) {
	var ok bool
	err := e.QueryRowContext(ctx, q, args...).Scan(&ok)
	return ok, err
}
