//go:build linux || darwin || dragonfly || freebsd || netbsd || openbsd

package kannukifile

import (
	"context"
	"testing"

	"github.com/kannuki-go/kannuki/store"
)

// BenchmarkCycle is one uncontended Acquire and Release.
func BenchmarkCycle(b *testing.B) {
	be := newBackend(b, b.TempDir())
	k := store.Key{String: "bench"}
	ctx := context.Background()
	for b.Loop() {
		l, err := be.Acquire(ctx, k, excl(store.WaitForever))
		if err != nil {
			b.Fatal(err)
		}
		if err := l.Release(ctx); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkHandoff passes one lock back and forth between two Backends (as
// between two processes): every Acquire waits for the other's Release.
func BenchmarkHandoff(b *testing.B) {
	b1, b2 := pair(b)
	k := store.Key{String: "bench"}
	ctx := context.Background()
	l := mustAcquire(b, b1, k, excl(0))
	for b.Loop() {
		ch := async(ctx, b2, k, excl(store.WaitForever))
		mustRelease(b, l)
		r := <-ch
		if r.err != nil {
			b.Fatal(r.err)
		}
		ch = async(ctx, b1, k, excl(store.WaitForever))
		mustRelease(b, r.l)
		r = <-ch
		if r.err != nil {
			b.Fatal(r.err)
		}
		l = r.l
	}
	mustRelease(b, l)
}
