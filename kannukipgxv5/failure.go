package kannukipgxv5

import (
	"context"
	"errors"
	"fmt"

	"github.com/kannuki-go/kannuki/store"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/kannuki-go/kannuki/internal/pgsql"
)

// What a failed lock statement (a try, a wait, the unlock-and-try of a
// relock) says about the session that ran it. Only what is truly in doubt
// costs a connection, and with a shared connection the locks of every
// lease on it:
//
//	the statement's error                     granted?           the connection
//	----------------------------------------  -----------------  ------------------------------------
//	53200 (out of shared memory: the server's no: the lock       kept with all its other locks; the
//	shared lock table is full)                manager refuses    key is unlocked once on the session
//	                                          before it grants   to be sure (an unlock needs no room
//	                                                             in the table; a pg_locks query
//	                                                             would fail with 53200 itself); the
//	                                                             caller gets store.ErrCapacity
//	another server error on a live            maybe: 55P03,      kept once the session answered:
//	connection, within ReleaseTimeout         57014 or an error  on a shared connection the key's
//	(55P03 lock_timeout, 40P01 deadlock,      after the call     unlock undoes a grant (the books
//	57014 canceled, 26000 statement gone,     can follow a       say the session holds the key for
//	...)                                      grant              nobody else); on a connection of
//	                                                             its own pg_locks is asked, and a
//	                                                             55P03 that came with the grant
//	                                                             hands the lock out
//	no answer: a network error, EOF, a FATAL  in doubt           destroyed, and every lease on it
//	error (57P01 pg_terminate_backend, a                         told at once (store.LossWatcher)
//	shutdown), a closed connection, a
//	statement past ReleaseTimeout, or the
//	settling statement above failing too
//	an unlock that returned false             the books are      destroyed, every lease on it told
//	                                          wrong
//
// A relock whose try part fails with 53200 has unlocked already (the try
// runs only after an unlock that returned true): it is a release, and the
// key is not taken again.

// codeOutOfMemory is SQLSTATE 53200, out_of_memory: "out of shared memory"
// when the shared lock table is full.
const codeOutOfMemory = "53200"

// serverCode is the SQLSTATE of an error the server sent, or "".
func serverCode(err error) string {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.Code
	}
	return ""
}

// capacityError is the error of a lock statement of key refused with
// 53200: it matches store.ErrCapacity and the driver's error.
func capacityError(key string, err error) error {
	return fmt.Errorf("%w: lock %q: PostgreSQL's shared lock table is full. It is shared by every client of the server and "+
		"holds max_locks_per_transaction x (max_connections + max_prepared_transactions + background workers) locks, "+
		"more while spare shared memory lasts (12,784 with the defaults 64 and 100 on PostgreSQL 15); "+
		"raise max_locks_per_transaction (a server restart) to hold more, or bound this process with kannuki.Options.MaxHeld: %w",
		store.ErrCapacity, key, err)
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

// connError is the error of a pool request for a lock of key that failed.
// A server whose lock table is full cannot start a session either (the
// start takes locks on shared catalogs): that is a capacity error too.
func connError(key string, err error) error {
	if serverCode(err) == codeOutOfMemory {
		return capacityError(key, err)
	}
	return fmt.Errorf("kannuki: pgx: %w", err)
}
