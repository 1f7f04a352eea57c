package kannukiasynq_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"

	"github.com/hibiken/asynq"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/kannuki-go/kannuki"
	"github.com/kannuki-go/kannuki/kannukiasynq"
	"github.com/kannuki-go/kannuki/kannukipgxv5"
)

// The middleware goes on the ServeMux; the retry helpers go into the
// server's Config when duplicates should run later instead of being
// skipped. (This example needs Redis and PostgreSQL, so it is compiled but
// not run.)
func Example() {
	ctx := context.Background()
	cfg, err := pgxpool.ParseConfig(os.Getenv("DATABASE_URL"))
	if err != nil {
		panic(err)
	}
	cfg.MaxConns = 30 // more than the server's Concurrency: each running task holds one
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		panic(err)
	}
	defer pool.Close()
	locker := kannuki.New(kannukipgxv5.New(pool, kannukipgxv5.Options{}), kannuki.Options{
		KeyPrefix: "tasks",
		Logger:    slog.Default(),
	})

	srv := asynq.NewServer(asynq.RedisClientOpt{Addr: "127.0.0.1:6379"}, asynq.Config{
		Concurrency:    20,
		RetryDelayFunc: kannukiasynq.RetryDelay(nil),
		IsFailure:      kannukiasynq.IsFailure(nil),
	})
	mux := asynq.NewServeMux()
	mux.Use(kannukiasynq.Middleware(locker, kannukiasynq.Options{
		OnConflict: kannukiasynq.RetryLater,
		Types:      []string{"report:build"},
	}))
	mux.HandleFunc("report:build", func(ctx context.Context, t *asynq.Task) error {
		return nil // build the report
	})
	if err := srv.Run(mux); err != nil {
		panic(err)
	}
}

func ExampleKey() {
	a, _ := kannukiasynq.Key("report:build", []byte(`{"user": 42, "month": "2024-05"}`))
	b, _ := kannukiasynq.Key("report:build", []byte(`{"month":"2024-05","user":42}`))
	c, _ := kannukiasynq.Key("thumbnail", []byte{0xff, 0xd8, 0xff})
	fmt.Println(a)
	fmt.Println(a == b)
	fmt.Println(c)
	// Output:
	// report:build:{"month":"2024-05","user":42}
	// true
	// thumbnail:"base64:/9j/"
}
