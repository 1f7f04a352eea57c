package kannuki_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kannuki-go/kannuki/store"

	"github.com/kannuki-go/kannuki"
)

// checkCountingBackend counts the keepalive checks of each of its leases.
type checkCountingBackend struct {
	*chanBackend
	mu     sync.Mutex
	checks map[string]*atomic.Int64
	after  atomic.Int64 // checks of leases already released
	fail   sync.Map     // key -> struct{}: Check fails
}

type checkCountingLease struct {
	store.Lease
	b        *checkCountingBackend
	key      string
	released atomic.Bool
}

func (b *checkCountingBackend) Acquire(ctx context.Context, k store.Key, req store.Request) (store.Lease, error) {
	l, err := b.chanBackend.Acquire(ctx, k, req)
	if err != nil {
		return nil, err
	}
	b.mu.Lock()
	if b.checks[k.String] == nil {
		b.checks[k.String] = new(atomic.Int64)
	}
	b.mu.Unlock()
	return &checkCountingLease{Lease: l, b: b, key: k.String}, nil
}

func (l *checkCountingLease) Release(ctx context.Context) error {
	l.released.Store(true)
	return l.Lease.Release(ctx)
}

func (l *checkCountingLease) Check(context.Context) error {
	if l.released.Load() {
		l.b.after.Add(1)
	}
	l.b.mu.Lock()
	n := l.b.checks[l.key]
	l.b.mu.Unlock()
	n.Add(1)
	if _, bad := l.b.fail.Load(l.key); bad {
		return errors.New("session killed")
	}
	return nil
}

func TestKeepaliveChecksEveryHeldLock(t *testing.T) {
	b := &checkCountingBackend{chanBackend: newChanBackend(), checks: map[string]*atomic.Int64{}}
	l := kannuki.New(b, kannuki.Options{KeepaliveInterval: 2 * time.Millisecond})
	ctx := context.Background()
	const n = 200
	var hs []*kannuki.Handle
	for i := range n {
		h, err := l.Acquire(ctx, fmt.Sprint("k", i))
		if err != nil {
			t.Fatal(err)
		}
		hs = append(hs, h)
	}
	// Every held lock gets its checks, and a failing one only its own loss.
	b.fail.Store("k7", struct{}{})
	select {
	case <-hs[7].Lost():
	case <-time.After(10 * time.Second):
		t.Fatal("the failing lease was not found lost")
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		least := int64(1 << 62)
		b.mu.Lock()
		for k, c := range b.checks {
			if k != "k7" { // checks of a lost lock stop
				least = min(least, c.Load())
			}
		}
		b.mu.Unlock()
		if least >= 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 10s some held lock had only %d keepalive checks", least)
		}
		time.Sleep(5 * time.Millisecond)
	}
	for i, h := range hs {
		err := h.Release(ctx)
		if lost := errors.Is(err, kannuki.ErrLockLost); lost != (i == 7) {
			t.Fatalf("Release of lock %d = %v", i, err)
		}
	}
	time.Sleep(20 * time.Millisecond) // ten intervals: no check may follow a release
	if a := b.after.Load(); a != 0 {
		t.Fatalf("%d keepalive checks ran after their lock was released", a)
	}
}
