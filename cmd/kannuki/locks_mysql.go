package main

import (
	"context"
	"database/sql"
	"strings"
)

// mysqlLocksNote says what "kannuki locks" cannot show on this server and
// which setting would show it, or "" when the listing is complete. It asks
// the questions kannukimysql's listing asks to choose its source:
// performance_schema with the metadata lock instrument lists every lock;
// MariaDB's metadata_lock_info plugin lists every holder; without either,
// only locks someone waits for can be found (from the process list), and
// a lock held while nobody waits is invisible.
func mysqlLocksNote(ctx context.Context, db *sql.DB) string {
	var version string
	if db.QueryRowContext(ctx, "SELECT VERSION()").Scan(&version) != nil {
		return ""
	}
	mariadb := strings.Contains(strings.ToLower(version), "mariadb")
	const (
		lead    = "note: locks held while nobody waits for them are not listed: "
		oneKey  = "; kannuki status KEY shows any one key's holder"
		restart = "performance_schema=ON in the server configuration (takes a restart)"
	)
	var ps sql.NullInt64
	if db.QueryRowContext(ctx, "SELECT @@performance_schema").Scan(&ps) != nil {
		return ""
	}
	if ps.Int64 != 0 {
		var enabled string
		err := db.QueryRowContext(ctx, "SELECT ENABLED FROM performance_schema.setup_instruments WHERE NAME = 'wait/lock/metadata/sql/mdl'").Scan(&enabled)
		switch {
		case err == nil && strings.EqualFold(enabled, "YES"):
			return ""
		case err == nil || err == sql.ErrNoRows:
			return lead + "performance_schema is on but its metadata lock instrument is off; " +
				"UPDATE performance_schema.setup_instruments SET ENABLED = 'YES' WHERE NAME = 'wait/lock/metadata/sql/mdl' " +
				"(or performance-schema-instrument='wait/lock/metadata/sql/mdl=ON' in the server configuration) would list them" + oneKey
		default:
			return lead + "this user cannot read performance_schema; SELECT on performance_schema.* for it would list them" + oneKey
		}
	}
	if mariadb {
		var n int
		if db.QueryRowContext(ctx, "SELECT COUNT(*) FROM information_schema.PLUGINS WHERE PLUGIN_NAME = 'METADATA_LOCK_INFO' AND PLUGIN_STATUS = 'ACTIVE'").Scan(&n) == nil && n > 0 {
			return ""
		}
		return lead + "the server runs without performance_schema and without the metadata_lock_info plugin; " +
			"INSTALL SONAME 'metadata_lock_info' (no restart) or " + restart + " would list them" + oneKey
	}
	return lead + "the server runs without performance_schema; " + restart + " would list them" + oneKey
}
