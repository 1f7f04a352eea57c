package kannuki_test

import (
	"context"
	"testing"

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
