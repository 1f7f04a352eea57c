package kannukipgxv5

import (
	"context"
	"net"
	"sync/atomic"
	"testing"

	"github.com/kannuki-go/kannuki/store"
)

// countingConn counts the writes to the server: pgx writes each request in
// one go and then waits for the answer, so writes are round trips.
type countingConn struct {
	net.Conn
	writes *atomic.Int64
}

func (c countingConn) Write(p []byte) (int, error) {
	c.writes.Add(1)
	return c.Conn.Write(p)
}

// TestRoundTrips: once a connection's statement cache is warm, an
// uncontended Acquire is one round trip and Release one, whatever the key
// and whether or not the context can be canceled; a refused try is one.
func TestRoundTrips(t *testing.T) {
	cfg := poolConfig(t)
	var writes atomic.Int64
	dial := cfg.ConnConfig.DialFunc
	cfg.ConnConfig.DialFunc = func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := dial(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return countingConn{c, &writes}, nil
	}
	cfg.MaxConns = 1 // one connection: its cache warms once
	pool := openPool(t, cfg)
	ctx, cancel := guardCtx()
	defer cancel()
	b := New(pool, Options{})

	measure := func(f func()) int64 {
		before := writes.Load()
		f()
		return writes.Load() - before
	}
	for _, mode := range []store.Mode{store.ModeExclusive, store.ModeShared} {
		req := store.Request{Mode: mode, Wait: store.WaitForever}
		mustRelease(t, mustAcquire(t, b, newKey(t, "warm"), req)) // prepares the two statements
		for _, c := range []struct {
			name string
			ctx  context.Context
		}{{"background", context.Background()}, {"cancelable", ctx}} {
			var l store.Lease
			var err error
			acq := measure(func() {
				if l, err = b.Acquire(c.ctx, newKey(t, "k"), req); err != nil {
					t.Fatal(err)
				}
			})
			rel := measure(func() {
				if err := l.Release(c.ctx); err != nil {
					t.Fatal(err)
				}
			})
			if acq != 1 || rel != 1 {
				t.Errorf("%s, %s context: Acquire took %d round trips, Release %d; want 1 and 1", mode, c.name, acq, rel)
			}
		}
	}
	// A refused try: one round trip, needing a second connection (the pool
	// has one, so the holder comes from another pool).
	k := newKey(t, "held")
	holder := mustAcquire(t, New(newPool(t, 1), Options{}), k, excl(0))
	defer mustRelease(t, holder)
	if n := measure(func() {
		if _, err := b.Acquire(ctx, k, excl(0)); err == nil {
			t.Fatal("try on a held key succeeded")
		}
	}); n != 1 {
		t.Errorf("a refused try took %d round trips, want 1", n)
	}
}
