package pgsql

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/kannuki-go/kannuki"
)

// The errgroup case of the README's Limits: goroutines that fn starts with
// errgroup.WithContext, each calling WithLock on the same key with the
// group's context, take turns; meanwhile another Locker on another
// connection cannot take the key.
func TestReentryErrgroup(t *testing.T) {
	forEachDriver(t, func(t *testing.T, d driver) {
		b, _ := newBackend(t, d, 4)
		other, _ := newBackend(t, d, 4)
		l := kannuki.New(b, kannuki.Options{})
		lo := kannuki.New(other, kannuki.Options{})
		key := uniqueKey(t).String
		ctx := ctxT(t, 30*time.Second)
		var inside, most, ran atomic.Int32
		err := l.WithLock(ctx, key, func(ctx context.Context) error {
			g, gctx := errgroup.WithContext(ctx)
			for range 4 {
				g.Go(func() error {
					for range 20 {
						err := l.WithLock(gctx, key, func(context.Context) error {
							n := inside.Add(1)
							if n > most.Load() {
								most.Store(n) // only one goroutine is inside at a time, if the rule holds
							}
							if ok, err := lo.TryLock(context.Background(), key, func(context.Context) error { return nil }); ok || err != nil {
								t.Errorf("another Locker took the key during a nested call: %v, %v", ok, err)
							}
							inside.Add(-1)
							ran.Add(1)
							return nil
						})
						if err != nil {
							return err
						}
					}
					return nil
				})
			}
			return g.Wait()
		})
		if err != nil {
			t.Fatal(err)
		}
		if most.Load() != 1 || ran.Load() != 80 {
			t.Fatalf("%d nested calls, at most %d at once; want 80, one at a time", ran.Load(), most.Load())
		}
	})
}
