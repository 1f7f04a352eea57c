// Command migrations shows the user guide's use case "Database migration
// safety": every server runs the migrations at start-up, and the lock
// "db_migration" makes them run one at a time, so each migration is
// applied exactly once even when all servers start together.
//
// Each worker stands for a SafeMigrationJob run per migration name: under
// the lock it skips a migration already recorded in
// kannuki_example_schema_migrations, else applies it (here: records its
// effect in kannuki_example_migration_effects, slowly) and records it.
//
//	go run ./migrations -backend mysql &
//	go run ./migrations -backend mysql
package main

import (
	"context"
	"flag"
	"os"
	"os/signal"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kannuki-go/kannuki/examples/internal/exampleenv"
)

const (
	migrationsTable = "kannuki_example_schema_migrations"
	effectsTable    = "kannuki_example_migration_effects"
	gaugeTable      = "kannuki_example_migration_gauge"
)

// migrations are applied in this order.
var migrations = []string{
	"001_create_users",
	"002_add_users_email",
	"003_create_orders",
	"004_index_orders_user_id",
	"005_backfill_order_totals",
	"006_drop_legacy_tables",
}

func main() {
	cfg := exampleenv.Flags(flag.CommandLine)
	work := flag.Duration("work", 10*time.Millisecond, "time applying one migration takes")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	env, err := cfg.Open(ctx)
	if err != nil {
		exampleenv.Fatal("migrations", err)
	}
	defer env.Close()
	m := &migrator{env: env, gauge: env.NewGauge(gaugeTable), work: *work}
	if err := env.Schema(ctx, m.gauge.Schema(),
		`CREATE TABLE IF NOT EXISTS `+migrationsTable+` (run VARCHAR(64) NOT NULL, name VARCHAR(200) NOT NULL)`,
		`CREATE TABLE IF NOT EXISTS `+effectsTable+` (run VARCHAR(64) NOT NULL, name VARCHAR(200) NOT NULL, pid BIGINT NOT NULL)`,
	); err != nil {
		exampleenv.Fatal("migrations", err)
	}
	if err := env.WaitStart(ctx); err != nil {
		exampleenv.Fatal("migrations", err)
	}

	var wg sync.WaitGroup
	errs := make(chan error, env.Workers)
	for range env.Workers {
		wg.Go(func() {
			for _, name := range migrations {
				if err := m.perform(ctx, name); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		exampleenv.Fatal("migrations", err)
	}
	env.Summary("migrations", "migrations", len(migrations), "applied", m.applied.Load(), "already_applied", m.skipped.Load())
}

type migrator struct {
	env              *exampleenv.Env
	gauge            exampleenv.Gauge
	work             time.Duration
	applied, skipped atomic.Int64
}

// perform is SafeMigrationJob#perform(migration_name), run under
// `with_lock :migration, key: -> { "db_migration" }`.
func (m *migrator) perform(ctx context.Context, name string) error {
	return m.env.Locker.WithLock(ctx, "db_migration", func(ctx context.Context) error {
		db := m.env.Data
		n, err := db.Int(ctx, "SELECT COUNT(*) FROM "+migrationsTable+" WHERE run = ? AND name = ?", m.env.Run, name)
		if err != nil {
			return err
		}
		if n > 0 {
			m.skipped.Add(1)
			return nil
		}

		if err := m.gauge.Enter(ctx, "db_migration"); err != nil {
			return err
		}
		defer m.gauge.Exit(ctx, "db_migration")
		time.Sleep(m.work) // ALTER TABLE ...
		if _, err := db.Exec(ctx, "INSERT INTO "+effectsTable+" (run, name, pid) VALUES (?, ?, ?)", m.env.Run, name, m.env.Pid); err != nil {
			return err
		}
		if _, err := db.Exec(ctx, "INSERT INTO "+migrationsTable+" (run, name) VALUES (?, ?)", m.env.Run, name); err != nil {
			return err
		}
		m.applied.Add(1)
		return nil
	})
}
