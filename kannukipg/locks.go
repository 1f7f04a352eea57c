package kannukipg

import (
	"context"
	"database/sql"
	"fmt"

	"github.com/kannuki-go/kannuki/store"

	"github.com/kannuki-go/kannuki/internal/pgsql"
)

// Locks implements store.Lister: the advisory locks of the current
// database, held and awaited, by any client, named as pgsql.LockInfos
// says (a waiting session always shows its key; a holder once its try or
// its keepalive ran with the comment: with FormBound, after the first
// keepalive).
func (b *Backend) Locks(ctx context.Context) ([]store.LockInfo, error) {
	if b == nil || b.db == nil {
		return nil, fmt.Errorf("%w: nil Backend or *sql.DB", store.ErrInvalidArgument)
	}
	rows, err := b.db.QueryContext(ctx, pgsql.Locks)
	if err != nil {
		return nil, fmt.Errorf("list locks: %w", err)
	}
	defer rows.Close()
	var rs []pgsql.LockRow
	for rows.Next() {
		var (
			r     pgsql.LockRow
			pid   sql.NullInt64
			since sql.NullTime
		)
		if err := rows.Scan(&r.ClassID, &r.ObjID, &r.ObjSubID, &r.Mode, &r.Granted, &pid, &r.Application, &r.Client, &since, &r.Query); err != nil {
			return nil, fmt.Errorf("list locks: %w", err)
		}
		r.PID, r.Since = pid.Int64, since.Time
		rs = append(rs, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list locks: %w", err)
	}
	return pgsql.LockInfos(rs), nil
}
