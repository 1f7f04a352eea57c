package kannuki_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/kannuki-go/kannuki/keys"

	"github.com/kannuki-go/kannuki"
	"github.com/kannuki-go/kannuki/kannukimem"
)

// The in-process backend stands in for PostgreSQL or MySQL here; with
// kannukipg or kannukimysql the code is the same.
func Example() {
	l := kannuki.New(kannukimem.New(), kannuki.Options{KeyPrefix: "myapp"})
	ctx := context.Background()

	err := l.WithLock(ctx, "order_processing/123", func(ctx context.Context) error {
		fmt.Println("processing order 123 alone")
		return nil
	})
	fmt.Println("err:", err)
	// Output:
	// processing order 123 alone
	// err: <nil>
}

func ExampleLocker_TryLock() {
	l := kannuki.New(kannukimem.New(), kannuki.Options{})
	ctx := context.Background()

	// Another instance is running the scheduler.
	other, _ := l.Acquire(ctx, "scheduler/hourly")
	defer other.Release(ctx)

	ran, err := l.TryLock(ctx, "scheduler/hourly", func(ctx context.Context) error {
		fmt.Println("running hourly tasks")
		return nil
	})
	if err == nil && !ran {
		fmt.Println("scheduler skipped: another instance is running")
	}
	// Output: scheduler skipped: another instance is running
}

func ExampleLocker_Lock() {
	l := kannuki.New(kannukimem.New(), kannuki.Options{})
	ctx := context.Background()
	other, _ := l.Acquire(ctx, "inventory/42")
	defer other.Release(ctx)

	err := l.WithLock(ctx, "inventory/42", func(ctx context.Context) error {
		return nil // decrement stock, create the order
	}, kannuki.Timeout(10*time.Millisecond))

	var na *kannuki.NotAcquiredError
	if errors.As(err, &na) {
		fmt.Printf("%s not acquired: %s\n", na.Key, na.Reason)
	}
	// Output: inventory/42 not acquired: timeout
}

func ExampleLocker_Acquire() {
	l := kannuki.New(kannukimem.New(), kannuki.Options{})
	ctx := context.Background()

	h, err := l.Acquire(ctx, "migration")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer h.Release(ctx) // idempotent; works even if ctx is canceled by then

	select {
	case <-h.Lost():
		fmt.Println("lock lost:", h.Err())
	default:
		fmt.Println("running migrations while holding", h.Key())
	}
	// Output: running migrations while holding migration
}

func Example_definedKeys() {
	// Declared once, like the Ruby model macro `kannuki :number_generation, scope: :company_id`.
	var numberGeneration = keys.Define[int64]("number_generation")

	l := kannuki.New(kannukimem.New(), kannuki.Options{})
	companyID := int64(7)
	_ = l.WithLock(context.Background(), numberGeneration.Key(companyID), func(ctx context.Context) error {
		fmt.Println("next invoice number for company", companyID, "under", numberGeneration.Key(companyID))
		return nil
	})
	// Output: next invoice number for company 7 under number_generation/7
}

func ExampleRetry() {
	l := kannuki.New(kannukimem.New(), kannuki.Options{
		Strategy: kannuki.Retry{Attempts: 5, Interval: time.Millisecond, Multiplier: 2, Jitter: 0.2},
	})
	err := l.WithLock(context.Background(), "op", func(ctx context.Context) error {
		fmt.Println("got it")
		return nil
	})
	fmt.Println(err)
	// Output:
	// got it
	// <nil>
}
