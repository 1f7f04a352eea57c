package kannukifile

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/kannuki-go/kannuki/store"
)

// Without inotify the waiter polls, with the same results.
func TestPollingFallback(t *testing.T) {
	b1, b2 := pair(t)
	b2.wakers.poll = true
	k := store.Key{String: t.Name()}
	l := mustAcquire(t, b1, k, excl(0))
	start := time.Now()
	if _, err := b2.Acquire(context.Background(), k, excl(50*time.Millisecond)); !errors.Is(err, store.ErrNotAcquired) || time.Since(start) < 50*time.Millisecond {
		t.Fatalf("polling timed wait: %v after %v", err, time.Since(start))
	}
	ctx, cancel := context.WithCancel(context.Background())
	w := async(ctx, b2, k, excl(store.WaitForever))
	pending(t, w, "polling waiter")
	cancel()
	if r := await(t, w); !errors.Is(r.err, context.Canceled) {
		t.Fatalf("canceled polling wait: %v", r.err)
	}
	w = async(context.Background(), b2, k, excl(store.WaitForever))
	pending(t, w, "polling waiter")
	mustRelease(t, l)
	r := await(t, w)
	if r.err != nil {
		t.Fatal(r.err)
	}
	mustRelease(t, r.l)
}

func TestInotifyPoolBounded(t *testing.T) {
	b1, b2 := pair(t)
	k := store.Key{String: t.Name()}
	l := mustAcquire(t, b1, k, excl(0))
	var wg sync.WaitGroup
	for range 2 * maxIdleInotify {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := b2.Acquire(context.Background(), k, shared(100*time.Millisecond))
			if !errors.Is(err, store.ErrNotAcquired) {
				t.Errorf("shared wait: %v", err)
			}
		}()
	}
	wg.Wait()
	mustRelease(t, l)
	b2.wakers.mu.Lock()
	n := len(b2.wakers.idle)
	b2.wakers.mu.Unlock()
	if n == 0 || n > maxIdleInotify {
		t.Fatalf("%d idle inotify instances, want 1..%d", n, maxIdleInotify)
	}
	b2.Close()
	if len(b2.wakers.idle) != 0 {
		t.Fatal("Close kept instances")
	}
	// Still usable after Close.
	mustRelease(t, mustAcquire(t, b2, k, excl(time.Second)))
}
