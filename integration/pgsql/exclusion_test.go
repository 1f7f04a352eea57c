package pgsql

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kannuki-go/kannuki/store"
)

// TestExclusion: 16 goroutines of one client contend on one key for 500
// lock cycles in all (200 with -short), half of them with a cancellable
// context; an overlap counter and a plain counter that the race detector
// watches prove no two holders ever overlapped. TestConformance runs the
// full 2,000-cycle form, in-process and across 3 OS processes.
func TestExclusion(t *testing.T) {
	forEachDriver(t, func(t *testing.T, d driver) {
		b, db := newBackend(t, d, 10)
		obs := newObserver(t)
		k := uniqueKey(t)
		const goroutines = 16
		cycles := int32(500)
		if testing.Short() {
			cycles = 200
		}
		var (
			next    atomic.Int32
			active  atomic.Int32
			counter int // guarded by the lock under test only
			wg      sync.WaitGroup
		)
		for g := range goroutines {
			wg.Add(1)
			go func() {
				defer wg.Done()
				ctx := context.Background()
				if g%2 == 1 { // half with a cancellable context (the watcher path)
					var cancel context.CancelFunc
					ctx, cancel = context.WithTimeout(ctx, time.Minute)
					defer cancel()
				}
				for next.Add(1) <= cycles {
					l, err := b.Acquire(ctx, k, store.Request{Wait: store.WaitForever})
					if err != nil {
						t.Errorf("Acquire: %v", err)
						return
					}
					if n := active.Add(1); n != 1 {
						t.Errorf("%d holders at once", n)
					}
					counter++
					active.Add(-1)
					if err := l.Release(context.Background()); err != nil {
						t.Errorf("Release: %v", err)
						return
					}
				}
			}()
		}
		wg.Wait()
		if counter != int(cycles) {
			t.Fatalf("counter = %d, want %d", counter, cycles)
		}
		if n := obs.held(t, k); n != 0 {
			t.Fatalf("%d holders at the end", n)
		}
		assertPoolClean(t, db)
	})
}
