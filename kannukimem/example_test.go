package kannukimem_test

import (
	"context"
	"fmt"

	"github.com/kannuki-go/kannuki/store"

	"github.com/kannuki-go/kannuki"
	"github.com/kannuki-go/kannuki/kannukimem"
)

// A key held by "someone else" makes TryLock report false until the
// simulated holder lets go.
func Example() {
	b := kannukimem.New()
	l := kannuki.New(b, kannuki.Options{})
	ctx := context.Background()
	work := func(context.Context) error { fmt.Println("ran"); return nil }

	k, _ := l.Key("scheduler/hourly")
	release, _ := b.SimulateHeld(k, store.ModeExclusive)
	ok, err := l.TryLock(ctx, "scheduler/hourly", work)
	fmt.Println(ok, err)

	release()
	ok, err = l.TryLock(ctx, "scheduler/hourly", work)
	fmt.Println(ok, err)
	// Output:
	// false <nil>
	// ran
	// true <nil>
}
