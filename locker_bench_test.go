package kannuki_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/kannuki-go/kannuki/store"

	"github.com/kannuki-go/kannuki"
	"github.com/kannuki-go/kannuki/kannukimem"
)

// BenchmarkMemBackend is the memory backend alone: the base the Locker's
// own cost is measured against.
func BenchmarkMemBackend(b *testing.B) {
	be := kannukimem.New()
	ctx := context.Background()
	l := kannuki.New(be, kannuki.Options{})
	k, err := l.Key("bench")
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		ls, err := be.Acquire(ctx, k, store.Request{Wait: store.WaitForever})
		if err != nil {
			b.Fatal(err)
		}
		if err := ls.Release(ctx); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkMemWithLock is an uncontended WithLock with an empty fn on the
// memory backend: the Locker's own cost per cycle on top of the backend's.
func BenchmarkMemWithLock(b *testing.B) {
	l := kannuki.New(kannukimem.New(), kannuki.Options{})
	ctx := context.Background()
	fn := func(context.Context) error { return nil }
	b.ReportAllocs()
	for b.Loop() {
		if err := l.WithLock(ctx, "bench", fn); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkMemAcquire is Acquire plus Release on the memory backend.
func BenchmarkMemAcquire(b *testing.B) {
	l := kannuki.New(kannukimem.New(), kannuki.Options{})
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		h, err := l.Acquire(ctx, "bench")
		if err != nil {
			b.Fatal(err)
		}
		if err := h.Release(ctx); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkPairedQueues measures what the Locker's shared timer (the
// waiting report's due.Queue) saves an uncontended WithLock with a hook
// installed (as with kannukiotel or kannukiprom): two Lockers on one
// memory backend, one as shipped and one with a runtime timer per call,
// alternating blocks of 200 cycles. It reports the median block time of
// each per cycle and their ratio (timer / queue: above 1 the queue pays).
func BenchmarkPairedQueues(b *testing.B) {
	be := kannukimem.New()
	ctx, cancel := context.WithCancel(context.Background()) // as from an application
	defer cancel()
	hook := nopHook{}
	queue := kannuki.New(be, kannuki.Options{Hook: hook})
	timer := kannuki.New(be, kannuki.Options{Hook: hook})
	kannuki.TimerPerNode(timer)
	lockers := []*kannuki.Locker{queue, timer}
	fn := func(context.Context) error { return nil }
	const block = 200
	spent := [2][]time.Duration{}
	n := 0
	for b.Loop() {
		for j := range lockers {
			i := (n + j) % 2
			t0 := time.Now()
			for range block {
				if err := lockers[i].WithLock(ctx, "bench", fn); err != nil {
					b.Fatal(err)
				}
			}
			spent[i] = append(spent[i], time.Since(t0))
		}
		n++
	}
	med := [2]float64{}
	for i := range spent {
		slices.Sort(spent[i])
		med[i] = float64(spent[i][len(spent[i])/2].Nanoseconds()) / block
	}
	b.ReportMetric(med[0], "queue-ns/cycle")
	b.ReportMetric(med[1], "timer-ns/cycle")
	b.ReportMetric(med[1]/med[0], "timer/queue")
}

type nopHook struct{}

func (nopHook) LockEvent(context.Context, kannuki.Event) {}
