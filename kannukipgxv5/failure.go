package kannukipgxv5

import (
	"context"
	"errors"

	"github.com/kannuki-go/kannuki/store"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/kannuki-go/kannuki/internal/pgsql"
)

// How a failed lock statement is judged is internal/pgsql's (verdict.go),
// for both PostgreSQL backends. Here: on a shared connection the key's
// unlock settles a statement that may have granted (the books say the
// session holds the key for nobody else); on a connection of its own
// pg_locks is asked.

// serverCode is the SQLSTATE of an error the server sent, or "".
func serverCode(err error) string {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.Code
	}
	return ""
}

// settleUnlock unlocks k on c after a statement that failed and may have
// granted it, so that the session is known not to hold it: an unlock that
// returns true undid a grant, one that returns false found nothing. Only
// an error leaves it in doubt. The caller knows c holds k in mode for
// nobody else (PostgreSQL counts a session's locks re-entrantly). It needs
// no room in the lock table, unlike a query of pg_locks.
// It goes over the simple protocol, with the id as a literal: a server
// that lost the connection's prepared statements (26000) answers it too.
func settleUnlock(ctx context.Context, c *pgx.Conn, k store.Key, m store.Mode) error {
	var unlocked bool
	return c.QueryRow(ctx, pgsql.Unlock(k, m), pgx.QueryExecModeSimpleProtocol).Scan(&unlocked)
}

// connError is the error of a pool request for a lock that failed. A
// server whose lock table is full cannot start a session either (the
// start takes locks on shared catalogs): that is a capacity error too.
func connError(err error) error {
	if serverCode(err) == pgsql.CodeLockTableFull {
		return pgsql.CapacityError(err)
	}
	return err
}
