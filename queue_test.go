package kannuki_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kannuki-go/kannuki/store"

	"github.com/kannuki-go/kannuki"
)

// countingBackend records how many Acquire calls are in the backend at
// once: what a database would see as waiting connections.
type countingBackend struct {
	*chanBackend
	inside, most atomic.Int64
}

func (b *countingBackend) Acquire(ctx context.Context, k store.Key, req store.Request) (store.Lease, error) {
	n := b.inside.Add(1)
	defer b.inside.Add(-1)
	for {
		m := b.most.Load()
		if n <= m || b.most.CompareAndSwap(m, n) {
			break
		}
	}
	return b.chanBackend.Acquire(ctx, k, req)
}

func TestLocalQueueOneWaiterInBackend(t *testing.T) {
	for _, noQueue := range []bool{false, true} {
		b := &countingBackend{chanBackend: newChanBackend()}
		l := kannuki.New(b, kannuki.Options{NoLocalQueue: noQueue})
		ctx := context.Background()
		var holders, overlaps, done atomic.Int64
		var wg sync.WaitGroup
		for i := 0; i < 64; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				err := l.WithLock(ctx, "hot", func(context.Context) error {
					if holders.Add(1) != 1 {
						overlaps.Add(1)
					}
					time.Sleep(100 * time.Microsecond)
					holders.Add(-1)
					return nil
				})
				if err == nil {
					done.Add(1)
				}
			}()
		}
		wg.Wait()
		if overlaps.Load() != 0 || done.Load() != 64 {
			t.Fatalf("noQueue=%v: %d overlaps, %d of 64 done", noQueue, overlaps.Load(), done.Load())
		}
		if !noQueue && b.most.Load() != 1 {
			t.Fatalf("with the local queue, %d calls were in the backend at once; want 1", b.most.Load())
		}
		if noQueue && b.most.Load() < 2 {
			t.Logf("without the local queue only %d calls overlapped in the backend (scheduling)", b.most.Load())
		}
	}
}

func TestLocalQueueTryTimeoutCancel(t *testing.T) {
	b := &countingBackend{chanBackend: newChanBackend()}
	l := kannuki.New(b, kannuki.Options{})
	ctx := context.Background()
	h, err := l.Acquire(ctx, "k")
	if err != nil {
		t.Fatal(err)
	}
	b.tries.Store(0)
	// A try fails at once, without asking the backend.
	if _, err := l.Acquire(ctx, "k", kannuki.Timeout(0)); !isReason(err, kannuki.ReasonHeld) || b.tries.Load() != 0 {
		t.Fatalf("try: %v, %d backend tries", err, b.tries.Load())
	}
	// A bounded wait spends its budget in the queue.
	const d = 30 * time.Millisecond
	start := time.Now()
	if _, err := l.Acquire(ctx, "k", kannuki.Timeout(d)); !isReason(err, kannuki.ReasonTimeout) || time.Since(start) < d {
		t.Fatalf("timed wait: %v after %s", err, time.Since(start))
	}
	// A canceled waiter leaves the queue; the next one still gets the key.
	cctx, cancel := context.WithCancel(ctx)
	errc := make(chan error, 1)
	go func() { _, err := l.Acquire(cctx, "k"); errc <- err }()
	got := acquireLater(t, l, "k")
	time.Sleep(5 * time.Millisecond) // let both queue; the outcome does not depend on it
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("canceled waiter: %v", err)
	}
	h.Release(ctx)
	h2 := <-got
	if err := h2.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if held, _ := l.Held(ctx, "k"); held {
		t.Fatal("still held")
	}
	// Shared locks do not queue locally.
	s := kannuki.New(&sharedOK{newChanBackend()}, kannuki.Options{})
	hs, err := s.Acquire(ctx, "k", kannuki.Shared())
	if err != nil {
		t.Fatal(err)
	}
	hs.Release(ctx)
}
