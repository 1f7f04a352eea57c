package hooktest

import (
	"context"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/kannuki-go/kannuki"
	"github.com/kannuki-go/kannuki/kannukimem"
)

// MemCycle returns one uncontended WithLock cycle on key on kannukimem
// with hook h (nil for none). The keepalive is off so that its goroutine
// does not blur the figures.
func MemCycle(tb testing.TB, h kannuki.Hook, key string) func() {
	l := kannuki.New(kannukimem.New(), kannuki.Options{Hook: h, KeepaliveInterval: -1})
	ctx := context.Background()
	return func() {
		if err := l.WithLock(ctx, key, Nothing); err != nil {
			tb.Fatal(err)
		}
	}
}

// Contender is one Locker of InterleavedCycles and the name its figures are
// reported under.
type Contender struct {
	Name   string
	Locker *kannuki.Locker
}

// InterleavedCycles runs, per iteration, one uncontended WithLock cycle with
// an empty fn on each contender, each on a key of its own, in an order
// shuffled every iteration (from a fixed seed), so that the load of a
// shared machine falls on all alike and none always follows the same
// other, whose traces in the caches it would inherit. The first
// contender is the baseline. It reports for each contender the median
// time of a cycle (name-ns/cycle) and, for the others, its ratio to the
// baseline's (name/base). Medians, because on a shared machine a few
// cycles stall for milliseconds and would swamp a mean; the mean of each
// is reported too (name-mean-ns/cycle), since work a hook moves off some
// cycles shows in the mean only. ns/op is reported as 0: an iteration is
// several cycles. It returns the times of each contender's cycles.
func InterleavedCycles(bm *testing.B, cs ...Contender) [][]time.Duration {
	ctx := context.Background()
	keys := make([]string, len(cs))
	for i := range cs {
		keys[i] = Unique("kannuki-bench/" + cs[i].Name)
	}
	spent := make([][]time.Duration, len(cs))
	order := make([]int, len(cs))
	for i := range order {
		order[i] = i
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for bm.Loop() {
		rng.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
		for _, i := range order {
			start := time.Now()
			if err := cs[i].Locker.WithLock(ctx, keys[i], Nothing); err != nil {
				bm.Fatal(err)
			}
			spent[i] = append(spent[i], time.Since(start))
		}
	}
	bm.ReportMetric(0, "ns/op")
	var base float64
	for i, c := range cs {
		med, mean := Median(spent[i]), Mean(spent[i])
		bm.ReportMetric(med, c.Name+"-ns/cycle")
		bm.ReportMetric(mean, c.Name+"-mean-ns/cycle")
		if i == 0 {
			base = med
		} else {
			bm.ReportMetric(med/base, c.Name+"/"+cs[0].Name)
		}
	}
	return spent
}

// Median returns the median of d in nanoseconds, sorting d.
func Median(d []time.Duration) float64 {
	if len(d) == 0 {
		return 0
	}
	slices.Sort(d)
	return float64(d[len(d)/2].Nanoseconds())
}

// Mean returns the mean of d in nanoseconds.
func Mean(d []time.Duration) float64 {
	if len(d) == 0 {
		return 0
	}
	var sum time.Duration
	for _, x := range d {
		sum += x
	}
	return float64(sum.Nanoseconds()) / float64(len(d))
}
