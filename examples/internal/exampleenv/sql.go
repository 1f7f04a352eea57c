package exampleenv

import (
	"context"
	"database/sql"
	"strconv"
	"strings"
)

// Querier is what SQL runs statements on: *sql.DB, *sql.Tx or *sql.Conn.
type Querier interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// SQL runs statements written with ? placeholders on PostgreSQL ($1, $2...)
// and MySQL alike, so that each example has one text per statement.
type SQL struct {
	q        Querier
	postgres bool
}

// Exec runs a statement.
func (s SQL) Exec(ctx context.Context, query string, args ...any) (sql.Result, error) {
	return s.q.ExecContext(ctx, s.rebind(query), args...)
}

// Query runs a query.
func (s SQL) Query(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	return s.q.QueryContext(ctx, s.rebind(query), args...)
}

// QueryRow runs a query returning at most one row.
func (s SQL) QueryRow(ctx context.Context, query string, args ...any) *sql.Row {
	return s.q.QueryRowContext(ctx, s.rebind(query), args...)
}

// Int runs a query returning one integer (a count, a MAX, a stock level).
func (s SQL) Int(ctx context.Context, query string, args ...any) (int64, error) {
	var n sql.NullInt64
	err := s.QueryRow(ctx, query, args...).Scan(&n)
	return n.Int64, err
}

// Postgres reports whether the statements go to PostgreSQL.
func (s SQL) Postgres() bool { return s.postgres }

// rebind turns ? into $n for PostgreSQL. The examples' statements have no
// ? inside string literals.
func (s SQL) rebind(query string) string {
	if !s.postgres || !strings.Contains(query, "?") {
		return query
	}
	var b strings.Builder
	n := 0
	for _, r := range query {
		if r == '?' {
			n++
			b.WriteString("$" + strconv.Itoa(n))
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

// NewSQL returns SQL on q for PostgreSQL (postgres) or MySQL.
func NewSQL(q Querier, postgres bool) SQL { return SQL{q: q, postgres: postgres} }
