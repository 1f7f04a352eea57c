package hooktest

import (
	"context"
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

// PairedCycles runs a cycle on plain (on keyPlain) and one on hooked (on
// keyHooked) per iteration, in alternating order so that the load of a
// shared machine falls on both alike, and reports both times and hooked's
// relative to plain's (see reportPaired). It returns the number of hooked
// cycles.
func PairedCycles(bm *testing.B, plain, hooked *kannuki.Locker, keyPlain, keyHooked string) int {
	ctx := context.Background()
	cycle := func(l *kannuki.Locker, key string) time.Duration {
		start := time.Now()
		if err := l.WithLock(ctx, key, Nothing); err != nil {
			bm.Fatal(err)
		}
		return time.Since(start)
	}
	var ta, tb []time.Duration
	for bm.Loop() {
		if len(ta)%2 == 0 {
			ta = append(ta, cycle(plain, keyPlain))
			tb = append(tb, cycle(hooked, keyHooked))
		} else {
			tb = append(tb, cycle(hooked, keyHooked))
			ta = append(ta, cycle(plain, keyPlain))
		}
	}
	reportPaired(bm, ta, tb)
	return len(tb)
}

// reportPaired reports the median cycle of each Locker (plain's times ta,
// hooked's tb) and their ratio. Medians, because on a shared machine a few
// cycles stall for milliseconds and would swamp a mean.
func reportPaired(bm *testing.B, ta, tb []time.Duration) {
	median := func(d []time.Duration) float64 {
		slices.Sort(d)
		return float64(d[len(d)/2].Nanoseconds())
	}
	ma, mb := median(ta), median(tb)
	bm.ReportMetric(0, "ns/op")
	bm.ReportMetric(ma, "median-ns/cycle-plain")
	bm.ReportMetric(mb, "median-ns/cycle-hooked")
	bm.ReportMetric(mb/ma, "hooked/plain")
}
