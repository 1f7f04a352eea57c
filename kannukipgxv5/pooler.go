package kannukipgxv5

import (
	"context"

	"github.com/kannuki-go/kannuki/store"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/kannuki-go/kannuki/internal/pgsql"
)

// Session locks behind a transaction pooler are refused: see
// internal/pgsql.PoolerCheck for why and how it is told. pgx gives the
// process id announced at connect (PgConn().PID()).

// checkSession refuses session locks on connections that do not go
// straight to PostgreSQL, unless Options.SessionPooler says the pooler pins
// sessions. It costs one round trip, on the first Acquire of the Backend.
func (b *Backend) checkSession(ctx context.Context, pc *pgxpool.Conn, key store.Key) error {
	if b.opts.SessionPooler {
		return nil
	}
	known, pooled := b.pooler.Known()
	if !known {
		var pid int32
		err := pc.Conn().QueryRow(ctx, pgsql.BackendPID, pgx.QueryExecModeSimpleProtocol).Scan(&pid)
		if err != nil {
			if cerr := ctx.Err(); cerr != nil {
				return cerr
			}
			return err
		}
		b.pooler.Record(uint32(pid), pc.Conn().PgConn().PID())
		_, pooled = b.pooler.Known()
	}
	if pooled {
		return b.pooler.Refusal("kannukipgxv5", key.String)
	}
	return nil
}
