package kannukipgxv5_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"time"

	"github.com/kannuki-go/kannuki/keys"
	"github.com/kannuki-go/kannuki/store"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/kannuki-go/kannuki"
	"github.com/kannuki-go/kannuki/kannukipgxv5"
)

func Example() {
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, "postgres://postgres@127.0.0.1:5432/test?sslmode=disable")
	if err != nil {
		log.Fatal(err)
	}
	defer pool.Close()

	locker := kannuki.New(kannukipgxv5.New(pool, kannukipgxv5.Options{}), kannuki.Options{KeyPrefix: "myapp"})
	err = locker.WithLock(ctx, "invoice_numbers/42", func(ctx context.Context) error {
		// One process at a time, across all servers, hands out the next number.
		return nil
	}, kannuki.Timeout(10*time.Second))
	var na *kannuki.NotAcquiredError
	if errors.As(err, &na) {
		fmt.Println("busy:", na.Reason)
	}
}

// A Backend can also be used on its own, with derived keys.
func ExampleBackend_Acquire() {
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, "postgres://postgres@127.0.0.1:5432/test?sslmode=disable")
	if err != nil {
		log.Fatal(err)
	}
	defer pool.Close()

	b := kannukipgxv5.New(pool, kannukipgxv5.Options{})
	key, err := keys.Ruby{}.Derive("myapp", "scheduler/hourly")
	if err != nil {
		log.Fatal(err)
	}
	lease, err := b.Acquire(ctx, key, store.Request{Mode: store.ModeExclusive, Wait: 0})
	switch {
	case errors.Is(err, store.ErrNotAcquired):
		return // another node runs it
	case err != nil:
		log.Fatal(err)
	}
	defer lease.Release(ctx)
	// ... run the hourly job ...
}
