package kannukiriver_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/rivertype"

	"github.com/kannuki-go/kannuki"
	"github.com/kannuki-go/kannuki/kannukipgxv5"
	"github.com/kannuki-go/kannuki/kannukiriver"
)

// The middleware goes into river.Config.Middleware. The Locker gets a pool
// of its own: every running guarded job holds one of its connections.
// (This example needs a database, so it is compiled but not run.)
func Example() {
	ctx := context.Background()
	dsn := os.Getenv("DATABASE_URL")
	riverPool, err := pgxpool.New(ctx, dsn)
	if err != nil {
		panic(err)
	}
	defer riverPool.Close()
	lockConfig, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		panic(err)
	}
	lockConfig.MaxConns = 50 // more than the jobs that run at once
	lockPool, err := pgxpool.NewWithConfig(ctx, lockConfig)
	if err != nil {
		panic(err)
	}
	defer lockPool.Close()

	locker := kannuki.New(kannukipgxv5.New(lockPool, kannukipgxv5.Options{}), kannuki.Options{
		KeyPrefix: "jobs",
		Logger:    slog.Default(), // skipped duplicates are logged at info level
	})
	workers := river.NewWorkers()
	// river.AddWorker(workers, &SyncWorker{}) ...
	client, err := river.NewClient(riverpgxv5.New(riverPool), &river.Config{
		Queues:  map[string]river.QueueConfig{river.QueueDefault: {MaxWorkers: 20}},
		Workers: workers,
		Middleware: []rivertype.Middleware{
			kannukiriver.New(locker, kannukiriver.Options{
				OnConflict: kannukiriver.Skip,
				Kinds:      []string{"sync_account"}, // guard only this kind
			}),
		},
	})
	if err != nil {
		panic(err)
	}
	if err := client.Start(ctx); err != nil {
		panic(err)
	}
	defer func() { _ = client.Stop(ctx) }()
}

func ExampleKey() {
	a, _ := kannukiriver.Key("sync_account", []byte(`{"user": 42, "full": true}`))
	b, _ := kannukiriver.Key("sync_account", []byte(`{"full":true,"user":42}`))
	fmt.Println(a)
	fmt.Println(a == b)
	// Output:
	// sync_account:{"full":true,"user":42}
	// true
}

// A job row read back after it finished tells whether it was skipped.
func ExampleSkippedKey() {
	job := &rivertype.JobRow{Metadata: []byte(`{"output":{"kannuki_skipped":true,"kannuki_key":"sync_account:{\"user\":42}"}}`)}
	key, skipped := kannukiriver.SkippedKey(job)
	fmt.Println(skipped, key)
	// Output: true sync_account:{"user":42}
}
