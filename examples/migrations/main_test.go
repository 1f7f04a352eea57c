package main

import (
	"context"
	"fmt"
	"testing"

	"go.uber.org/goleak"

	"github.com/kannuki-go/kannuki/examples/internal/exampletest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const procs, workers = 2, 4

// TestMigrationsRunOnce starts 2 processes of 4 workers, each running every
// migration, and checks that each migration was applied exactly once
// (one effect, one record), that no two were applied at once, and that
// every process's calls add up. Without locks (-backend none) some
// migration must run twice.
func TestMigrationsRunOnce(t *testing.T) {
	bin := exampletest.Build(t)
	for _, tg := range exampletest.All() {
		t.Run(tg.Name, func(t *testing.T) {
			e := exampletest.Open(t, tg, migrationsTable, effectsTable, gaugeTable)
			if err := check(t, e, e.Start(bin, procs, "-workers", fmt.Sprint(workers))); err != nil {
				e.Fatalf("%v", err)
			}
		})
	}
	t.Run("none", func(t *testing.T) {
		e := exampletest.Open(t, exampletest.None(), migrationsTable, effectsTable, gaugeTable)
		err := check(t, e, e.Start(bin, procs, "-workers", fmt.Sprint(workers)))
		if err == nil {
			t.Fatal("without locks the check found nothing wrong: it could not catch a broken lock")
		}
		t.Logf("without locks, as expected: %v", err)
	})
}

// check verifies that each migration ran exactly once, alone.
func check(t *testing.T, e *exampletest.Env, ps []exampletest.Proc) error {
	t.Helper()
	ctx := context.Background()
	if n := exampletest.Sum(t, ps, "applied") + exampletest.Sum(t, ps, "already_applied"); n != int64(procs*workers*len(migrations)) {
		return fmt.Errorf("processes report %d calls, want %d", n, procs*workers*len(migrations))
	}
	for _, name := range migrations {
		for _, table := range []string{effectsTable, migrationsTable} {
			n, err := e.Data.Int(ctx, "SELECT COUNT(*) FROM "+table+" WHERE run = ? AND name = ?", e.Run, name)
			if err != nil {
				t.Fatal(err)
			}
			if n != 1 {
				return fmt.Errorf("migration %s: %d rows in %s, want exactly 1", name, n, table)
			}
		}
	}
	if n := exampletest.Sum(t, ps, "applied"); n != int64(len(migrations)) {
		return fmt.Errorf("processes report %d migrations applied, want %d", n, len(migrations))
	}
	overlap, err := e.Data.Int(ctx, "SELECT COALESCE(MAX(max_running), 0) FROM "+gaugeTable+" WHERE run = ?", e.Run)
	if err != nil {
		t.Fatal(err)
	}
	if overlap != 1 {
		return fmt.Errorf("up to %d migrations ran at once, want 1", overlap)
	}
	return nil
}
