package kannukimysql

import (
	"context"
	"database/sql"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/kannuki-go/kannuki/store"
)

// Locks implements store.Lister: the user-level (GET_LOCK) locks held
// and awaited on the server, by every client, not only Kannuki. The source
// is the best the server offers:
//
//   - performance_schema.metadata_locks, when the performance schema is on
//     and its metadata-lock instrument enabled (the MySQL 8 default):
//     every holder and waiter, with names.
//   - MariaDB's information_schema.METADATA_LOCK_INFO, when the
//     metadata_lock_info plugin is installed (it is not by default;
//     Kannuki does not install it): every holder, with names; waiters come
//     from the process list.
//   - Otherwise the process list: sessions waiting in GET_LOCK, with the
//     name parsed from the statement (Kannuki's waits carry it as a hex
//     literal; prepared statements from other clients show only "?"), and
//     the holders of those names (IS_USED_LOCK). A lock nobody waits for
//     cannot be seen this way.
//
// Since is set for waiters only (when the wait began, to the second); the
// servers do not tell when a lock was taken.
func (b *Backend) Locks(ctx context.Context) ([]store.LockInfo, error) {
	if b == nil || b.db == nil {
		return nil, fmt.Errorf("%w: kannukimysql: nil Backend or *sql.DB", store.ErrInvalidArgument)
	}
	conn, err := b.db.Conn(ctx)
	if err != nil {
		return nil, fmt.Errorf("locks: %w", err)
	}
	defer conn.Close()

	var infos []store.LockInfo
	if ok, err := perfSchemaLocks(ctx, conn); err != nil {
		return nil, fmt.Errorf("locks: %w", err)
	} else if ok {
		infos, err = perfSchemaList(ctx, conn)
		if err != nil {
			return nil, fmt.Errorf("locks from performance_schema: %w", err)
		}
		return sortLocks(infos), nil
	}

	waiters, err := processListWaiters(ctx, conn)
	if err != nil {
		return nil, fmt.Errorf("locks from the process list: %w", err)
	}
	holders, pluginErr := lockInfoPlugin(ctx, conn)
	if pluginErr != nil {
		// No plugin: the holders of the awaited names.
		holders, err = holdersOf(ctx, conn, waiters)
		if err != nil {
			return nil, fmt.Errorf("locks: holders: %w", err)
		}
	}
	return sortLocks(append(holders, waiters...)), nil
}

// perfSchemaLocks reports whether performance_schema lists user locks.
func perfSchemaLocks(ctx context.Context, conn *sql.Conn) (bool, error) {
	var on sql.NullInt64
	if err := conn.QueryRowContext(ctx, "SELECT @@performance_schema").Scan(&on); err != nil {
		return false, err
	}
	if !on.Valid || on.Int64 == 0 {
		return false, nil
	}
	var enabled sql.NullString
	err := conn.QueryRowContext(ctx, "SELECT ENABLED FROM performance_schema.setup_instruments WHERE NAME = 'wait/lock/metadata/sql/mdl'").Scan(&enabled)
	if err == sql.ErrNoRows {
		return false, nil
	}
	if err != nil {
		return false, nil // no access to performance_schema: fall back
	}
	return strings.EqualFold(enabled.String, "YES"), nil
}

// perfSchemaList reads the user locks from performance_schema.
func perfSchemaList(ctx context.Context, conn *sql.Conn) ([]store.LockInfo, error) {
	rows, err := conn.QueryContext(ctx, `SELECT m.OBJECT_NAME, m.LOCK_STATUS, t.PROCESSLIST_ID, t.PROCESSLIST_HOST, t.PROCESSLIST_TIME
FROM performance_schema.metadata_locks m
LEFT JOIN performance_schema.threads t ON t.THREAD_ID = m.OWNER_THREAD_ID
WHERE m.OBJECT_TYPE = 'USER LEVEL LOCK' AND m.LOCK_STATUS IN ('GRANTED', 'PENDING')`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	now := time.Now()
	var infos []store.LockInfo
	for rows.Next() {
		var (
			name, status, host sql.NullString
			id, secs           sql.NullInt64
		)
		if err := rows.Scan(&name, &status, &id, &host, &secs); err != nil {
			return nil, err
		}
		li := store.LockInfo{Name: name.String, Mode: store.ModeExclusive, Granted: status.String == "GRANTED", PID: id.Int64, Client: host.String}
		if !li.Granted && secs.Valid {
			li.Since = now.Add(-time.Duration(secs.Int64) * time.Second)
		}
		infos = append(infos, li)
	}
	return infos, rows.Err()
}

// lockInfoPlugin reads the held user locks from MariaDB's
// metadata_lock_info plugin; an error means it is not installed.
func lockInfoPlugin(ctx context.Context, conn *sql.Conn) ([]store.LockInfo, error) {
	rows, err := conn.QueryContext(ctx, `SELECT m.THREAD_ID, m.TABLE_SCHEMA, p.HOST
FROM information_schema.METADATA_LOCK_INFO m
LEFT JOIN information_schema.PROCESSLIST p ON p.ID = m.THREAD_ID
WHERE m.LOCK_TYPE = 'User lock'`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var infos []store.LockInfo
	for rows.Next() {
		var (
			id         int64
			name, host sql.NullString
		)
		if err := rows.Scan(&id, &name, &host); err != nil {
			return nil, err
		}
		infos = append(infos, store.LockInfo{Name: name.String, Mode: store.ModeExclusive, Granted: true, PID: id, Client: host.String})
	}
	return infos, rows.Err()
}

// processListWaiters lists the sessions waiting in GET_LOCK.
func processListWaiters(ctx context.Context, conn *sql.Conn) ([]store.LockInfo, error) {
	rows, err := conn.QueryContext(ctx, "SELECT ID, HOST, TIME, INFO FROM information_schema.PROCESSLIST WHERE STATE = 'User lock'")
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	now := time.Now()
	var infos []store.LockInfo
	for rows.Next() {
		var (
			id, secs   int64
			host, info sql.NullString
		)
		if err := rows.Scan(&id, &host, &secs, &info); err != nil {
			return nil, err
		}
		name, _ := parseWaitName(info.String)
		infos = append(infos, store.LockInfo{
			Name: name, Mode: store.ModeExclusive, PID: id, Client: host.String,
			Since: now.Add(-time.Duration(secs) * time.Second),
		})
	}
	return infos, rows.Err()
}

// holdersOf finds, with IS_USED_LOCK, the holders of the names waiters
// wait for.
func holdersOf(ctx context.Context, conn *sql.Conn, waiters []store.LockInfo) ([]store.LockInfo, error) {
	var names []string
	seen := map[string]bool{}
	for _, w := range waiters {
		if w.Name != "" && !seen[w.Name] {
			if _, err := lockName(store.Key{Name: w.Name}); err == nil {
				seen[w.Name] = true
				names = append(names, w.Name)
			}
		}
	}
	if len(names) == 0 {
		return nil, nil
	}
	cols := make([]string, len(names))
	for i, n := range names {
		cols[i] = "IS_USED_LOCK(" + nameLiteral(n) + ")"
	}
	ids := make([]sql.NullInt64, len(names))
	dest := make([]any, len(names))
	for i := range ids {
		dest[i] = &ids[i]
	}
	if err := conn.QueryRowContext(ctx, "SELECT "+strings.Join(cols, ", ")).Scan(dest...); err != nil {
		return nil, err
	}
	var infos []store.LockInfo
	var idList []string
	for i, id := range ids {
		if id.Valid {
			infos = append(infos, store.LockInfo{Name: names[i], Mode: store.ModeExclusive, Granted: true, PID: id.Int64})
			idList = append(idList, strconv.FormatInt(id.Int64, 10))
		}
	}
	if len(idList) == 0 {
		return infos, nil
	}
	rows, err := conn.QueryContext(ctx, "SELECT ID, HOST FROM information_schema.PROCESSLIST WHERE ID IN ("+strings.Join(idList, ",")+")")
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	hosts := map[int64]string{}
	for rows.Next() {
		var id int64
		var host sql.NullString
		if err := rows.Scan(&id, &host); err != nil {
			return nil, err
		}
		hosts[id] = host.String
	}
	for i := range infos {
		infos[i].Client = hosts[infos[i].PID]
	}
	return infos, rows.Err()
}

// sortLocks orders by name, holders first, then by session.
func sortLocks(infos []store.LockInfo) []store.LockInfo {
	sort.SliceStable(infos, func(i, j int) bool {
		a, b := infos[i], infos[j]
		if a.Name != b.Name {
			return a.Name < b.Name
		}
		if a.Granted != b.Granted {
			return a.Granted
		}
		return a.PID < b.PID
	})
	return infos
}
