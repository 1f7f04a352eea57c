package kannukipg_test

import (
	"context"
	"database/sql"
	"log"
	"time"

	"github.com/kannuki-go/kannuki"
	"github.com/kannuki-go/kannuki/kannukipg"
)

// The Backend takes any *sql.DB on PostgreSQL. Import a driver in your
// program: _ "github.com/jackc/pgx/v5/stdlib" (driver name "pgx") or
// _ "github.com/lib/pq" ("postgres").
func Example() {
	db, err := sql.Open("pgx", "postgres://app@db.internal/app")
	if err != nil {
		log.Fatal(err)
	}
	defer db.Close()
	// Each held or awaited lock pins a connection; keep one spare so that
	// canceled waits can be interrupted on the server.
	db.SetMaxOpenConns(20)

	locks := kannuki.New(kannukipg.New(db, kannukipg.Options{}), kannuki.Options{KeyPrefix: "billing"})
	ctx := context.Background()
	err = locks.WithLock(ctx, "invoice-numbers/42", func(ctx context.Context) error {
		// Only one process at a time runs this, cluster-wide; ctx is
		// canceled if the lock is lost.
		return nil
	}, kannuki.Timeout(10*time.Second))
	if err != nil {
		log.Print(err)
	}
}
