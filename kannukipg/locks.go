package kannukipg

import (
	"context"
	"database/sql"
	"fmt"
	"strconv"

	"github.com/kannuki-go/kannuki/store"

	"github.com/kannuki-go/kannuki/internal/pgsql"
)

// Locks implements store.Lister: the advisory locks of the current
// database, held and awaited, by any client. Name is the key from the
// Kannuki comment of the session's current or last statement (best effort:
// a waiting session always shows it; a holder shows it once its try or its
// keepalive ran with the comment — with FormBound, after the first
// keepalive), else "k1,k2" for a two-int4 lock, else "".
func (b *Backend) Locks(ctx context.Context) ([]store.LockInfo, error) {
	if b == nil || b.db == nil {
		return nil, fmt.Errorf("%w: nil Backend or *sql.DB", store.ErrInvalidArgument)
	}
	rows, err := b.db.QueryContext(ctx, pgsql.Locks)
	if err != nil {
		return nil, fmt.Errorf("list locks: %w", err)
	}
	defer rows.Close()
	var out []store.LockInfo
	for rows.Next() {
		var (
			classid, objid, sub int64
			mode, app, client   string
			query               string
			granted             bool
			pid                 sql.NullInt64
			since               sql.NullTime
		)
		if err := rows.Scan(&classid, &objid, &sub, &mode, &granted, &pid, &app, &client, &since, &query); err != nil {
			return nil, fmt.Errorf("list locks: %w", err)
		}
		li := store.LockInfo{
			Name:        pgsql.NameFromQuery(query),
			Mode:        store.ModeExclusive,
			Granted:     granted,
			PID:         pid.Int64,
			Application: app,
			Client:      client,
			Since:       since.Time,
		}
		if mode == "ShareLock" {
			li.Mode = store.ModeShared
		}
		if sub == 2 {
			if li.Name == "" {
				li.Name = strconv.Itoa(int(int32(classid))) + "," + strconv.Itoa(int(int32(objid)))
			}
		} else {
			li.ID = int64(uint64(uint32(classid))<<32 | uint64(uint32(objid)))
		}
		out = append(out, li)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list locks: %w", err)
	}
	return out, nil
}
