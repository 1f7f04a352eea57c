package pgsql

import (
	"context"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/kannuki-go/kannuki/store"

	"github.com/kannuki-go/kannuki"
	"github.com/kannuki-go/kannuki/kannukipg"
)

// TestCompareForms measures lock+release cycles of the raw floor, of the
// Backend in each statement form and of Locker.WithLock, interleaved cycle
// by cycle so that load from other processes hits every variant alike
// (plain benchmarks on a shared 2-core machine drift by 2x between runs).
// It prints medians and ratios to the floor. Opt-in:
//
//	KANNUKI_PG_COMPARE=1 go test -run TestCompareForms -v ./pgsql
func TestCompareForms(t *testing.T) {
	if os.Getenv("KANNUKI_PG_COMPARE") == "" {
		t.Skip("set KANNUKI_PG_COMPARE=1 to compare statement forms")
	}
	const rounds, perRound = 40, 100
	for _, d := range drivers {
		db := openDB(t, d, 6)
		warm(t, db, 4)
		ctx := context.Background()
		k := uniqueKey(t, d.name)

		conn, err := db.Conn(ctx)
		if err != nil {
			t.Fatal(err)
		}
		lock, err := conn.PrepareContext(ctx, "SELECT pg_try_advisory_lock($1)")
		if err != nil {
			t.Fatal(err)
		}
		unlock, err := conn.PrepareContext(ctx, "SELECT pg_advisory_unlock($1)")
		if err != nil {
			t.Fatal(err)
		}
		lockX, err := conn.PrepareContext(ctx, "SELECT 1 WHERE pg_try_advisory_lock($1)")
		if err != nil {
			t.Fatal(err)
		}
		unlockX, err := conn.PrepareContext(ctx, "SELECT 1 WHERE pg_advisory_unlock($1)")
		if err != nil {
			t.Fatal(err)
		}
		floorKey := uniqueKey(t, d.name, "floor").ID
		type variant struct {
			name string
			run  func() error
		}
		cycle := func(be store.Backend, ctx context.Context) func() error {
			return func() error {
				l, err := be.Acquire(ctx, k, store.Request{Wait: store.WaitForever})
				if err != nil {
					return err
				}
				return l.Release(ctx)
			}
		}
		cctx, cancel := context.WithCancel(ctx)
		defer cancel()
		auto := kannukipg.New(db, kannukipg.Options{})
		locker := kannuki.New(auto, kannuki.Options{})
		vs := []variant{
			{"floor (prepared, pinned)", func() error {
				var ok bool
				if err := lock.QueryRowContext(ctx, floorKey).Scan(&ok); err != nil {
					return err
				}
				return unlock.QueryRowContext(ctx, floorKey).Scan(&ok)
			}},
			{"floor (prepared exec, pinned)", func() error {
				if _, err := lockX.ExecContext(ctx, floorKey); err != nil {
					return err
				}
				_, err := unlockX.ExecContext(ctx, floorKey)
				return err
			}},
			{"backend prepared", cycle(kannukipg.New(db, kannukipg.Options{Form: kannukipg.FormPrepared}), ctx)},
			{"backend bound", cycle(kannukipg.New(db, kannukipg.Options{Form: kannukipg.FormBound}), ctx)},
			{"backend auto, cancelable ctx", cycle(auto, cctx)},
			{"Locker.WithLock (auto)", func() error {
				return locker.WithLock(cctx, k.String, func(context.Context) error { return nil })
			}},
			// Last: the variant right after a simple-protocol statement
			// measured ~5-10% slower than the same variant elsewhere.
			{"backend literal", cycle(kannukipg.New(db, kannukipg.Options{Form: kannukipg.FormLiteral}), ctx)},
		}
		per := make([][]time.Duration, len(vs))
		for range rounds {
			sums := make([]time.Duration, len(vs))
			for range perRound {
				for i, v := range vs {
					start := time.Now()
					if err := v.run(); err != nil {
						t.Fatalf("%s: %v", v.name, err)
					}
					sums[i] += time.Since(start)
				}
			}
			for i := range vs {
				per[i] = append(per[i], sums[i]/perRound)
			}
		}
		floor := min(median(per[0]), median(per[1]))
		for i, v := range vs {
			m := median(per[i])
			t.Logf("%-10s %-30s median %6.1f µs/cycle  %5.0f cycles/s  %.2fx fastest floor", d.name, v.name,
				float64(m)/1e3, float64(time.Second)/float64(m), float64(floor)/float64(m))
		}
		lock.Close()
		unlock.Close()
		lockX.Close()
		unlockX.Close()
		conn.Close()
	}
}

func median(d []time.Duration) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)/2]
}
