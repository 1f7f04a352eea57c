package exampleenv

import (
	"context"
	"fmt"
)

// Gauge counts, in a database table, how many processes are inside a
// section at once, and keeps the highest count seen per name. It is how the
// examples prove "never two at once" across processes: if two lock holders
// overlapped, max_running reaches 2.
//
// The counter does not itself serialize anything: each update is one
// autocommitted statement, and the row stays incremented between Enter and
// Exit, so overlapping sections are seen, never hidden.
type Gauge struct {
	env   *Env
	table string
}

// NewGauge returns a gauge kept in table, which Schema creates.
func (e *Env) NewGauge(table string) Gauge { return Gauge{env: e, table: table} }

// Schema is the statement creating the gauge's table.
func (g Gauge) Schema() string {
	return fmt.Sprintf(`CREATE TABLE IF NOT EXISTS %s (
	run VARCHAR(64) NOT NULL,
	name VARCHAR(200) NOT NULL,
	running BIGINT NOT NULL,
	max_running BIGINT NOT NULL,
	PRIMARY KEY (run, name))`, g.table)
}

// Enter counts one more process inside section name.
func (g Gauge) Enter(ctx context.Context, name string) error {
	// max_running is assigned first: MySQL evaluates SET assignments left to
	// right with the values already assigned, PostgreSQL with the old row.
	update := fmt.Sprintf(`UPDATE %s SET max_running = GREATEST(max_running, running + 1), running = running + 1
	WHERE run = ? AND name = ?`, g.table)
	for range 2 {
		res, err := g.env.Data.Exec(ctx, update, g.env.Run, name)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil || n == 1 {
			return err
		}
		// First use of name: add its row (another process may race us to it).
		insert := "INSERT IGNORE INTO %s (run, name, running, max_running) VALUES (?, ?, 0, 0)"
		if g.env.Data.Postgres() {
			insert = "INSERT INTO %s (run, name, running, max_running) VALUES (?, ?, 0, 0) ON CONFLICT DO NOTHING"
		}
		if _, err := g.env.Data.Exec(ctx, fmt.Sprintf(insert, g.table), g.env.Run, name); err != nil {
			return err
		}
	}
	return fmt.Errorf("gauge %s: no row for %q", g.table, name)
}

// Exit counts one process less inside section name.
func (g Gauge) Exit(ctx context.Context, name string) error {
	_, err := g.env.Data.Exec(context.WithoutCancel(ctx),
		fmt.Sprintf(`UPDATE %s SET running = running - 1 WHERE run = ? AND name = ?`, g.table), g.env.Run, name)
	return err
}
