// Package duetest holds what paired benchmarks share: candidates run side
// by side in one process, so that the load of a shared machine falls on
// all of them alike.
package duetest

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/kannuki-go/kannuki/store"
)

// PairedCycles runs Acquire+Release of keys[i] on backends[i], each in
// turn, rotating the order every round, for b.Loop's rounds, and returns
// each backend's median cycle in nanoseconds: candidates measured side by
// side, so that the load of a shared machine falls on all of them alike.
func PairedCycles(b *testing.B, backends []store.Backend, keys []store.Key) []float64 {
	ctx := context.Background()
	spent := make([][]time.Duration, len(backends))
	n := 0
	b.ResetTimer()
	for b.Loop() {
		for j := range backends {
			i := (n + j) % len(backends)
			t0 := time.Now()
			ls, err := backends[i].Acquire(ctx, keys[i], store.Request{Wait: store.WaitForever})
			if err != nil {
				b.Fatal(err)
			}
			if err := ls.Release(ctx); err != nil {
				b.Fatal(err)
			}
			spent[i] = append(spent[i], time.Since(t0))
		}
		n++
	}
	med := make([]float64, len(backends))
	for i := range spent {
		slices.Sort(spent[i])
		med[i] = float64(spent[i][len(spent[i])/2].Nanoseconds())
	}
	return med
}
