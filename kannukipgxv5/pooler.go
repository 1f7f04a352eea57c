package kannukipgxv5

import (
	"context"
	"fmt"
	"sync/atomic"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/kannuki-go/kannuki"
)

// Session locks and transaction poolers. A session advisory lock belongs to
// the server session. Behind a pooler in transaction (or statement) mode,
// such as PgBouncer with pool_mode=transaction, a client connection has a
// server session only for the length of one transaction: the lock stays on
// a server session the pooler then hands to other clients, which are
// granted the same key again (the session holds it) while the unlock may
// run on yet another session and return false. No client can ask PgBouncer
// for its pool mode, but any pooler that multiplexes sessions must answer
// the connection's startup itself, with its own cancel key: the process id
// pgx was given at connect then differs from pg_backend_pid(). Direct
// connections (and plain TCP proxies) always show the same number.

// Values of poolerCheck.state.
const (
	sessionUnknown int32 = iota
	sessionDirect
	sessionPooled
)

// poolerCheck remembers what the first check found: all connections of a
// pool go to the same place.
type poolerCheck struct {
	state atomic.Int32
	pid   atomic.Uint32 // pg_backend_pid() when pooled, for the message
	seen  atomic.Uint32 // the process id the pooler announced
}

// checkSession refuses session locks on connections that do not go
// straight to PostgreSQL, unless Options.SessionPooler says the pooler pins
// sessions. It costs one round trip, on the first Acquire of the Backend.
func (b *Backend) checkSession(ctx context.Context, pc *pgxpool.Conn, key kannuki.Key) error {
	if b.opts.SessionPooler {
		return nil
	}
	switch b.pooler.state.Load() {
	case sessionDirect:
		return nil
	case sessionUnknown:
		var pid int32
		err := pc.Conn().QueryRow(ctx, "SELECT pg_backend_pid()", pgx.QueryExecModeSimpleProtocol).Scan(&pid)
		if err != nil {
			if cerr := ctx.Err(); cerr != nil {
				return ended(key, cerr)
			}
			return fmt.Errorf("kannuki: pgx: %w", err)
		}
		announced := pc.Conn().PgConn().PID()
		if uint32(pid) == announced {
			b.pooler.state.Store(sessionDirect)
			return nil
		}
		b.pooler.pid.Store(uint32(pid))
		b.pooler.seen.Store(announced)
		b.pooler.state.Store(sessionPooled)
	}
	return fmt.Errorf("%w: kannukipgxv5: session lock %q refused: the pool's connections go through a connection pooler "+
		"(server process %d, announced as %d); behind a pooler in transaction mode (PgBouncer pool_mode=transaction) a session lock "+
		"stays on a server session that other clients then use. Use transaction-scoped locks (kannuki.InTx, kannuki.LockTx), "+
		"or set Options.SessionPooler if the pooler gives each client its own session (pool_mode=session)",
		kannuki.ErrUnsupported, key.String, b.pooler.pid.Load(), b.pooler.seen.Load())
}
