package mysql

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/kannuki-go/kannuki/store"

	"github.com/kannuki-go/kannuki"
	"github.com/kannuki-go/kannuki/kannukimysql"
)

// TestTryAndHeld: a try on a free key takes it, a try on a held key fails
// with ErrNotAcquired (also from the holder's own Backend), Held sees the
// lock, Release frees it at once.
func TestTryAndHeld(t *testing.T) {
	forEachVariant(t, func(t *testing.T, v variant) {
		a, _ := newBackend(t, v, 4, kannukimysql.Options{})
		b, _ := newBackend(t, v, 4, kannukimysql.Options{})
		obs := newObserver(t)
		k := uniqueKey(t)
		ctx, cancel := guard()
		defer cancel()

		if held, err := a.Held(ctx, k); err != nil || held {
			t.Fatalf("Held before: %v %v", held, err)
		}
		l, err := a.Acquire(ctx, k, exclusive(0))
		if err != nil {
			t.Fatalf("try on a free key: %v", err)
		}
		if obs.owner(t, k) == 0 {
			t.Fatal("the server shows no holder")
		}
		for _, x := range []*kannukimysql.Backend{a, b} {
			if held, err := x.Held(ctx, k); err != nil || !held {
				t.Fatalf("Held while held: %v %v", held, err)
			}
			start := time.Now()
			_, err := x.Acquire(ctx, k, exclusive(0))
			if !errors.Is(err, kannuki.ErrNotAcquired) {
				t.Fatalf("try on a held key: %v, want ErrNotAcquired", err)
			}
			if d := time.Since(start); d > 5*time.Second {
				t.Fatalf("try took %s", d)
			}
		}
		if c, ok := l.(store.Checker); !ok {
			t.Fatal("lease is not a Checker")
		} else if err := c.Check(ctx); err != nil {
			t.Fatalf("Check: %v", err)
		}
		mustRelease(t, l)
		if o := obs.owner(t, k); o != 0 {
			t.Fatalf("held by %d after Release", o)
		}
		if held, err := b.Held(ctx, k); err != nil || held {
			t.Fatalf("Held after: %v %v", held, err)
		}
	})
}

// TestTimeouts: a bounded wait returns ErrNotAcquired no sooner than its
// budget, sub-second budgets included, on the fractional (MariaDB) and the
// whole-second (MySQL) path; a context deadline ends a wait with
// DeadlineExceeded no sooner than the deadline.
func TestTimeouts(t *testing.T) {
	t.Parallel() // mostly waiting
	forEachVariant(t, func(t *testing.T, v variant) {
		for _, whole := range []bool{false, true} {
			if whole && v.name != "default" {
				continue // the statements do not depend on the DSN
			}
			name := "fractional"
			if whole {
				name = "whole-seconds"
			}
			t.Run(name, func(t *testing.T) {
				holder, _ := newBackend(t, v, 2, kannukimysql.Options{})
				b, _ := newBackend(t, v, 4, kannukimysql.Options{WholeSecondTimeouts: whole})
				obs := newObserver(t)
				k := uniqueKey(t)
				l := mustAcquire(t, holder, k)
				defer mustRelease(t, l)
				holderID := obs.owner(t, k)
				for _, d := range []time.Duration{time.Millisecond, 30 * time.Millisecond, 300 * time.Millisecond, 1100 * time.Millisecond} {
					ctx, cancel := guard()
					start := time.Now()
					_, err := b.Acquire(ctx, k, exclusive(d))
					took := time.Since(start)
					cancel()
					if !errors.Is(err, kannuki.ErrNotAcquired) {
						t.Fatalf("wait %s: %v, want ErrNotAcquired", d, err)
					}
					if took < d {
						t.Fatalf("wait %s returned after %s", d, took)
					}
					if took > d+10*time.Second {
						t.Fatalf("wait %s took %s", d, took)
					}
				}
				for _, d := range []time.Duration{20 * time.Millisecond, 400 * time.Millisecond} {
					ctx, cancel := context.WithTimeout(context.Background(), d)
					start := time.Now()
					_, err := b.Acquire(ctx, k, exclusive(store.WaitForever))
					took := time.Since(start)
					cancel()
					if !errors.Is(err, context.DeadlineExceeded) || errors.Is(err, kannuki.ErrNotAcquired) {
						t.Fatalf("deadline %s: %v, want DeadlineExceeded only", d, err)
					}
					if took < d {
						t.Fatalf("deadline %s: returned after %s", d, took)
					}
				}
				if o := obs.owner(t, k); o != holderID {
					t.Fatalf("owner %d, want the holder %d", o, holderID)
				}
			})
		}
	})
}

// TestWaitIsOneStatement: a waiter waiting 3 s is one statement on the
// server: the same session, query id and text, with a growing time.
func TestWaitIsOneStatement(t *testing.T) {
	t.Parallel() // mostly waiting
	// The wait statement is parameterless text: the same on every DSN.
	func(t *testing.T, v variant) {
		holder, _ := newBackend(t, v, 2, kannukimysql.Options{})
		b, _ := newBackend(t, v, 2, kannukimysql.Options{})
		obs := newObserver(t)
		k := uniqueKey(t)
		l := mustAcquire(t, holder, k)
		done := make(chan error, 1)
		start := time.Now()
		go func() {
			ctx, cancel := guard()
			defer cancel()
			_, err := b.Acquire(ctx, k, exclusive(3*time.Second))
			done <- err
		}()
		first := obs.waitWaiters(t, k, 1)
		if len(first) != 1 {
			t.Fatalf("%d waiting statements, want 1", len(first))
		}
		if !strings.Contains(first[0].info, "GET_LOCK(CONVERT(X'") {
			t.Fatalf("waiting statement %q", first[0].info)
		}
		samples := 0
		for time.Since(start) < 2700*time.Millisecond {
			time.Sleep(300 * time.Millisecond)
			ws := obs.waiters(t, k)
			if len(ws) != 1 {
				t.Fatalf("%d waiting statements after %s, want 1", len(ws), time.Since(start))
			}
			w := ws[0]
			if w.id != first[0].id || w.queryID != first[0].queryID || w.info != first[0].info {
				t.Fatalf("the wait was re-issued: %+v then %+v", first[0], w)
			}
			if w.timeMS < first[0].timeMS {
				t.Fatalf("time went back: %+v then %+v", first[0], w)
			}
			samples++
		}
		err := <-done
		if !errors.Is(err, kannuki.ErrNotAcquired) {
			t.Fatalf("waiter: %v, want ErrNotAcquired", err)
		}
		if took := time.Since(start); took < 3*time.Second {
			t.Fatalf("waiter returned after %s", took)
		}
		t.Logf("one statement seen %d times over 3 s (session %d, query %d)", samples+1, first[0].id, first[0].queryID)
		mustRelease(t, l)
	}(t, variants[0])
}

// TestHandoff: a blocked waiter gets the lock when the holder releases.
func TestHandoff(t *testing.T) {
	forEachVariant(t, func(t *testing.T, v variant) {
		holder, _ := newBackend(t, v, 2, kannukimysql.Options{})
		b, _ := newBackend(t, v, 2, kannukimysql.Options{})
		obs := newObserver(t)
		k := uniqueKey(t)
		l := mustAcquire(t, holder, k)
		type result struct {
			l   store.Lease
			at  time.Time
			err error
		}
		got := make(chan result, 1)
		go func() {
			ctx, cancel := guard()
			defer cancel()
			l, err := b.Acquire(ctx, k, exclusive(store.WaitForever))
			got <- result{l, time.Now(), err}
		}()
		obs.waitWaiters(t, k, 1)
		released := time.Now()
		mustRelease(t, l)
		r := <-got
		if r.err != nil {
			t.Fatalf("waiter: %v", r.err)
		}
		t.Logf("handoff %s after the release began", r.at.Sub(released))
		if obs.owner(t, k) == 0 {
			t.Fatal("the waiter reports success, the server shows no holder")
		}
		mustRelease(t, r.l)
	})
}

// TestShared: MySQL has no reader locks.
func TestShared(t *testing.T) {
	b, _ := newBackend(t, variants[0], 2, kannukimysql.Options{})
	ctx, cancel := guard()
	defer cancel()
	_, err := b.Acquire(ctx, uniqueKey(t), store.Request{Mode: store.ModeShared, Wait: 0})
	if !errors.Is(err, kannuki.ErrUnsupported) {
		t.Fatalf("shared: %v, want ErrUnsupported", err)
	}
	if !strings.HasPrefix(err.Error(), "kannuki:") || !strings.Contains(err.Error(), "shared") {
		t.Fatalf("message %q", err)
	}
}

// TestWaitForeverLoops: a wait forever longer than MaxServerWait is a loop
// of server-side waits that goes on until the lock is granted.
func TestWaitForeverLoops(t *testing.T) {
	holder, _ := newBackend(t, variants[0], 2, kannukimysql.Options{})
	b, _ := newBackend(t, variants[0], 2, kannukimysql.Options{MaxServerWait: 50 * time.Millisecond})
	obs := newObserver(t)
	k := uniqueKey(t)
	l := mustAcquire(t, holder, k)
	got := make(chan outcome, 1)
	go func() {
		ctx, cancel := guard()
		defer cancel()
		l, err := b.Acquire(ctx, k, exclusive(store.WaitForever))
		got <- outcome{l, err}
	}()
	first := obs.waitWaiters(t, k, 1)[0]
	deadline := time.Now().Add(10 * time.Second)
	for {
		ws := obs.waiters(t, k)
		if len(ws) == 1 && ws[0].queryID != first.queryID {
			break // a later statement of the loop
		}
		if time.Now().After(deadline) {
			t.Fatal("no second wait statement within 10 s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	select {
	case o := <-got:
		t.Fatalf("the wait ended while the lock is held: %v", o.err)
	default:
	}
	mustRelease(t, l)
	o := <-got
	if o.err != nil {
		t.Fatalf("waiter: %v", o.err)
	}
	mustRelease(t, o.l)
}
