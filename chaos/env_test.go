package chaos

import (
	"context"
	"testing"
	"time"
)

// TestEnvironment records the database servers' versions and limits for
// the report.
func TestEnvironment(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	notes := []string{}
	counts := map[string]int64{}
	pg := pgAdmin(t)
	var v, mc string
	if err := pg.QueryRow(ctx, "SELECT version(), current_setting('max_connections')").Scan(&v, &mc); err == nil {
		notes = append(notes, "PostgreSQL: "+v+" (max_connections "+mc+")")
	}
	my := mysqlAdmin(t)
	var mv string
	var mmc int64
	if err := my.QueryRowContext(ctx, "SELECT VERSION(), @@max_connections").Scan(&mv, &mmc); err == nil {
		notes = append(notes, "MariaDB: "+mv)
		counts["mariadb_max_connections"] = mmc
	}
	record(t, Figure{Backend: "environment", Notes: notes, Counts: counts})
}
