// Package duetest lets benchmarks pair a due.Queue against a runtime
// timer per entry (due.Queue.TimerPerNode) on a backend whose queues are
// unexported fields, from outside its package.
package duetest

import (
	"context"
	"fmt"
	"reflect"
	"slices"
	"testing"
	"time"
	"unsafe"

	"github.com/kannuki-go/kannuki/internal/due"
	"github.com/kannuki-go/kannuki/store"
)

// TimerPerNode sets TimerPerNode on the due.Queue fields named fields of
// the struct *backend points to, before the backend's first use. It
// panics on a name that is not a due.Queue field: a benchmark that
// paired nothing would report a false figure.
func TimerPerNode(backend any, fields ...string) {
	v := reflect.ValueOf(backend).Elem()
	for _, name := range fields {
		f := v.FieldByName(name)
		if !f.IsValid() || f.Type() != reflect.TypeFor[due.Queue]() {
			panic(fmt.Sprintf("duetest: %T has no due.Queue field %q", backend, name))
		}
		(*due.Queue)(unsafe.Pointer(f.UnsafeAddr())).TimerPerNode = true
	}
}

// PairedCycles runs Acquire+Release of keys[i] on backends[i], each in
// turn, rotating the order every round, for b.Loop's rounds, and returns
// each backend's median cycle in nanoseconds: candidates measured side by
// side, so that the load of a shared machine falls on all of them alike.
func PairedCycles(b *testing.B, backends []store.Backend, keys []store.Key) []float64 {
	// A context that can be canceled, as from an application: with one
	// that cannot, the backends skip the bounds the queues serve.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
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
