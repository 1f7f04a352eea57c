package mysql

import (
	"context"
	"errors"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/kannuki-go/kannuki/store"

	"github.com/kannuki-go/kannuki"
	"github.com/kannuki-go/kannuki/kannukimysql"
)

// spinUntil busy-waits until t: sleeps are far too coarse for the
// sub-millisecond moments these tests aim at.
func spinUntil(t time.Time) {
	for time.Now().Before(t) {
	}
}

// outcome is what one contested acquisition ended in.
type outcome struct {
	l   store.Lease
	err error
}

// verify checks, right after a contested acquisition returned and the
// holder (if any, session holderID) finished releasing, that the server
// agrees with the outcome: success means this waiter's session holds the
// key (its Release answers 1), an error means nobody holds it. It returns
// whether the acquisition succeeded.
func verify(t testing.TB, obs *observer, k store.Key, holderID int64, o outcome, wantErr error) bool {
	t.Helper()
	owner := obs.owner(t, k)
	if o.err != nil {
		if wantErr != nil && !errors.Is(o.err, wantErr) {
			t.Fatalf("error %v, want one matching %v", o.err, wantErr)
		}
		if owner != 0 {
			t.Fatalf("Acquire failed (%v) but session %d holds %q (holder was %d)", o.err, owner, k.String, holderID)
		}
		return false
	}
	if owner == 0 || owner == holderID {
		t.Fatalf("Acquire succeeded but the owner is %d (holder was %d)", owner, holderID)
	}
	mustRelease(t, o.l) // fails unless RELEASE_LOCK answers 1 on the lease's session
	if owner := obs.owner(t, k); owner != 0 {
		t.Fatalf("held by %d after Release", owner)
	}
	return true
}

// TestCancelAtHandover: a waiter whose context is canceled at a random
// moment 0-0.6 ms after the holder starts releasing either succeeds and
// really holds the lock, or fails and holds nothing, checked from a third
// session at once. 300 trials per DSN.
func TestCancelAtHandover(t *testing.T) {
	forEachVariant(t, func(t *testing.T, v variant) {
		holder, _ := newBackend(t, v, 2, kannukimysql.Options{})
		b, _ := newBackend(t, v, 4, kannukimysql.Options{})
		obs := newObserver(t)
		k := uniqueKey(t)
		trials := 300
		if testing.Short() {
			trials = 50
		}
		wins := 0
		for range trials {
			hl := mustAcquire(t, holder, k)
			holderID := obs.owner(t, k)
			ctx, cancel := context.WithCancel(context.Background())
			got := make(chan outcome, 1)
			go func() {
				l, err := b.Acquire(ctx, k, exclusive(store.WaitForever))
				got <- outcome{l, err}
			}()
			obs.waitWaiters(t, k, 1)

			delay := time.Duration(rand.Int64N(int64(600 * time.Microsecond)))
			released := make(chan error, 1)
			start := time.Now()
			go func() { released <- hl.Release(context.Background()) }()
			spinUntil(start.Add(delay))
			cancel()
			o := <-got
			if err := <-released; err != nil {
				t.Fatalf("holder's Release: %v", err)
			}
			if verify(t, obs, k, holderID, o, context.Canceled) {
				wins++
			}
		}
		t.Logf("%d trials: %d succeeded and held, %d failed and held nothing", trials, wins, trials-wins)
	})
}

// TestNoLeakedLocks: acquisitions canceled at random moments (before the
// call, during the try, during the wait, around the handover, after the
// grant) and waits that time out leave no lock behind: each outcome is
// checked as it happens, and at the end no session holds any of the keys.
// 1,000 of each per DSN, spread over 8 workers with a key each.
func TestNoLeakedLocks(t *testing.T) {
	forEachVariant(t, func(t *testing.T, v variant) {
		const workers = 8
		trials := 1000
		if testing.Short() {
			trials = 200
		}
		holder, _ := newBackend(t, v, workers+2, kannukimysql.Options{})
		b, _ := newBackend(t, v, workers+2, kannukimysql.Options{})
		obs := newObserver(t)
		keys := make([]store.Key, workers)
		for i := range keys {
			keys[i] = uniqueKey(t)
		}

		var mu sync.Mutex
		counts := map[string]int{}
		note := func(what string) {
			mu.Lock()
			counts[what]++
			mu.Unlock()
		}
		var wg sync.WaitGroup
		for w := range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				k := keys[w]
				for i := w; i < trials; i += workers {
					cancelTrial(t, holder, b, obs, k, i%4, note)
				}
				for i := w; i < trials; i += workers {
					timeoutTrial(t, holder, b, k, i%2 == 0, note)
				}
			}()
		}
		wg.Wait()
		if t.Failed() {
			return
		}
		for _, k := range keys {
			if o := obs.owner(t, k); o != 0 {
				t.Fatalf("%q still held by session %d", k.String, o)
			}
			if ws := obs.waiters(t, k); len(ws) != 0 {
				t.Fatalf("%q still awaited by %+v", k.String, ws)
			}
		}
		t.Logf("outcomes: %v", counts)
	})
}

// cancelTrial is one acquisition canceled at a random moment. phase 0:
// before the call; 1: during the wait (the holder keeps the lock); 2:
// around the handover (the holder releases at a random moment too); 3: no
// holder (during the try or after the grant).
func cancelTrial(t *testing.T, holder, b store.Backend, obs *observer, k store.Key, phase int, note func(string)) {
	var hl store.Lease
	var holderID int64
	if phase == 1 || phase == 2 {
		hl = mustAcquire(t, holder, k)
		holderID = obs.owner(t, k)
	}
	ctx, cancel := context.WithCancel(context.Background())
	if phase == 0 {
		cancel()
	}
	got := make(chan outcome, 1)
	start := time.Now()
	go func() {
		l, err := b.Acquire(ctx, k, exclusive(store.WaitForever))
		got <- outcome{l, err}
	}()
	released := make(chan error, 1)
	switch phase {
	case 1:
		spinUntil(start.Add(time.Duration(rand.Int64N(int64(3 * time.Millisecond)))))
		cancel()
	case 2:
		rel := start.Add(time.Duration(rand.Int64N(int64(3 * time.Millisecond))))
		stop := start.Add(time.Duration(rand.Int64N(int64(3 * time.Millisecond))))
		go func() {
			spinUntil(rel)
			released <- hl.Release(context.Background())
		}()
		spinUntil(stop)
		cancel()
	case 3:
		spinUntil(start.Add(time.Duration(rand.Int64N(int64(2 * time.Millisecond)))))
		cancel()
	}
	o := <-got
	cancel()
	switch phase {
	case 1:
		if o.err == nil {
			t.Errorf("phase 1: granted while the holder holds the lock")
			return
		}
		if owner := obs.owner(t, k); owner != holderID {
			t.Errorf("phase 1: owner %d, want the holder %d", owner, holderID)
			return
		}
		mustRelease(t, hl)
	case 2:
		if err := <-released; err != nil {
			t.Errorf("holder's Release: %v", err)
			return
		}
	}
	if o.err != nil && !errors.Is(o.err, context.Canceled) {
		t.Errorf("phase %d: %v, want context.Canceled", phase, o.err)
		return
	}
	if verify(t, obs, k, holderID, o, nil) {
		note("succeeded")
	} else {
		note("canceled")
	}
}

// timeoutTrial is one wait that times out: a bounded wait of 1-5 ms
// (ErrNotAcquired), or a context deadline of 1-5 ms (DeadlineExceeded).
func timeoutTrial(t *testing.T, holder, b store.Backend, k store.Key, bounded bool, note func(string)) {
	hl := mustAcquire(t, holder, k)
	d := time.Millisecond + time.Duration(rand.Int64N(int64(4*time.Millisecond)))
	start := time.Now()
	ctx, cancel := guard()
	wait, want := d, kannuki.ErrNotAcquired
	if !bounded {
		cancel()
		ctx, cancel = context.WithTimeout(context.Background(), d)
		wait, want = store.WaitForever, context.DeadlineExceeded
	}
	_, err := b.Acquire(ctx, k, exclusive(wait))
	took := time.Since(start)
	cancel()
	switch {
	case !errors.Is(err, want):
		t.Errorf("wait %s: %v, want %v", d, err, want)
	case took < d:
		t.Errorf("wait %s returned after %s: %v", d, took, err)
	default:
		note("timed out")
	}
	mustRelease(t, hl)
}
