package kannukipg

import (
	"context"
	"database/sql"
	"fmt"

	"github.com/kannuki-go/kannuki/store"

	"github.com/kannuki-go/kannuki/internal/pgsql"
)

// Session locks behind a transaction pooler are refused: see
// internal/pgsql.PoolerCheck for why and how it is told. pgx/stdlib tells
// the process id announced at connect (its driver connection's
// Conn().PgConn().PID(), reached as netConnOf reaches the socket, without
// importing pgx); lib/pq keeps it to itself, so a pool on lib/pq is not
// checked.

// checkSession refuses session locks on connections that do not go
// straight to PostgreSQL, unless Options.SessionPooler says the pooler pins
// sessions. It costs one round trip, on the first Acquire of the Backend
// whose driver tells the announced process id.
func (b *Backend) checkSession(ctx context.Context, conn *sql.Conn, key store.Key) error {
	if b.sessionPooler {
		return nil
	}
	known, pooled := b.pooler.Known()
	if !known {
		if err := b.learnPooler(ctx, conn); err != nil {
			return err
		}
		_, pooled = b.pooler.Known()
	}
	if pooled {
		return b.pooler.Refusal("kannukipg", key.String)
	}
	return nil
}

// learnPooler compares, on conn, the process id announced at connect with
// pg_backend_pid() and records the finding; a driver that does not tell
// the announced id gives the check up (PoolerCheck.Unseen).
func (b *Backend) learnPooler(ctx context.Context, conn *sql.Conn) error {
	var announced uint32
	var told bool
	_ = conn.Raw(func(dc any) error {
		announced, told = announcedPID(dc)
		return nil
	})
	if !told {
		b.pooler.Unseen()
		return nil
	}
	qctx, cancel := b.bounded(ctx, true)
	defer cancel()
	var pid int64
	if err := conn.QueryRowContext(qctx, pgsql.BackendPID).Scan(&pid); err != nil {
		if cerr := ctxDone(ctx); cerr != nil {
			return cerr
		}
		return fmt.Errorf("PostgreSQL: check for a connection pooler: %w", err)
	}
	b.pooler.Record(uint32(pid), announced)
	return nil
}

// announcedPID returns the process id a pgx/stdlib driver connection was
// given at connect (Conn().PgConn().PID()). told is false for a driver
// that does not tell it.
func announcedPID(dc any) (pid uint32, told bool) {
	if p, ok := pgConnOf(dc).(interface{ PID() uint32 }); ok {
		return p.PID(), true
	}
	return 0, false
}
