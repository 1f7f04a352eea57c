package chaos

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/kannuki-go/kannuki"
	"github.com/kannuki-go/kannuki/internal/saidonce"
)

// TestPoolOfOne: with a pool of one connection, a held lock pins the only
// connection. Other calls must fail clearly and in time (never "held"
// when the key is free, never a deadlock, also when nested inside fn), and
// everything works again once the lock is released. kannukipgxv5 runs
// without multiplexing here (with it, locks share the connection: see
// TestPoolOfOneMux in kannukipgxv5).
func TestPoolOfOne(t *testing.T) {
	for _, kind := range dbKinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			b := mustBackend(t, backendConfig{Kind: kind, MaxConns: 1, AppName: "kannuki-chaos-pool1", Dedicated: true})
			l := kannuki.New(b, kannuki.Options{KeepaliveInterval: 100 * time.Millisecond})
			k1, k2 := "chaos/pool1/"+randHex(4)+"/a", "chaos/pool1/"+randHex(4)+"/b"
			ctx := context.Background()
			errs := map[string]int64{}
			samples := map[string]string{}
			note := func(what string, err error) {
				errs[what]++
				if err != nil {
					samples[what] = err.Error()
				}
			}

			h, err := l.Acquire(ctx, k1)
			if err != nil {
				t.Fatal(err)
			}

			// A try on another, free key: an error, not "held".
			start := time.Now()
			ok, err := l.TryLock(ctx, k2, func(context.Context) error { return nil })
			note("try", err)
			switch {
			case ok:
				t.Error("TryLock ran fn although the only connection is pinned by another lock")
			case err == nil:
				t.Errorf("TryLock on a free key with the pool exhausted = (false, nil), i.e. \"held\"; want an error matching ErrPoolExhausted")
			case !errors.Is(err, kannuki.ErrPoolExhausted):
				t.Errorf("TryLock with the pool exhausted: %v; want an error matching ErrPoolExhausted", err)
			}
			if d := time.Since(start); d > hangGuard {
				t.Errorf("TryLock with the pool exhausted took %s", d)
			}

			// A timed wait ends in time with a NotAcquiredError.
			wait := 300 * time.Millisecond
			start = time.Now()
			err = l.WithLock(ctx, k2, func(context.Context) error { return nil }, kannuki.Timeout(wait))
			note("timed", err)
			var na *kannuki.NotAcquiredError
			switch {
			case err == nil:
				t.Error("WithLock ran with the only connection pinned")
			case !errors.As(err, &na):
				t.Errorf("timed WithLock with the pool exhausted: %v; want a *NotAcquiredError", err)
			case !errors.Is(err, kannuki.ErrPoolExhausted):
				t.Errorf("timed WithLock with the pool exhausted: reason %s: %v; want it to match ErrPoolExhausted", na.Reason, err)
			}
			if d := time.Since(start); d > wait+hangGuard {
				t.Errorf("timed WithLock took %s (timeout %s)", d, wait)
			}

			// Nested inside fn, the classic self-deadlock: the inner call
			// needs the connection the outer one pins. The context ends it.
			err = l.WithLock(ctx, "chaos/pool1/outer-"+randHex(4), func(context.Context) error { return nil }, kannuki.Timeout(0))
			note("second-lock", err)
			if err := h.Release(ctx); err != nil {
				t.Fatal(err)
			}
			start = time.Now()
			err = l.WithLock(ctx, k1, func(fctx context.Context) error {
				ictx, cancel := context.WithTimeout(fctx, 500*time.Millisecond)
				defer cancel()
				ierr := l.WithLock(ictx, k2, func(context.Context) error { return nil }, kannuki.NoTimeout())
				note("nested", ierr)
				if ierr == nil {
					return errors.New("the nested lock was granted with the only connection pinned")
				}
				if saidonce.Problem(ierr.Error()) != "" {
					return fmt.Errorf("unclear nested error: %w", ierr)
				}
				return nil
			})
			if err != nil {
				t.Error(err)
			}
			if d := time.Since(start); d > 500*time.Millisecond+hangGuard {
				t.Errorf("nested lock with a pool of one took %s: a deadlock bounded only by the guard", d)
			}

			// A waiter queued behind the pinned connection gets it, and
			// the lock, once the holder releases: recovery.
			h, err = l.Acquire(ctx, k1)
			if err != nil {
				t.Fatal(err)
			}
			got := make(chan error, 1)
			go func() {
				got <- l.WithLock(ctx, k2, func(context.Context) error { return nil }, kannuki.Timeout(hangGuard))
			}()
			time.Sleep(50 * time.Millisecond)
			start = time.Now()
			if err := h.Release(ctx); err != nil {
				t.Fatal(err)
			}
			select {
			case err := <-got:
				if err != nil {
					t.Errorf("waiter after the release: %v", err)
				}
			case <-time.After(2 * hangGuard):
				t.Fatal("the waiter never got the connection back")
			}
			recovered := time.Since(start)
			for _, k := range []string{k1, k2} {
				if ok, err := l.TryLock(ctx, k, func(context.Context) error { return nil }); !ok || err != nil {
					t.Errorf("TryLock(%s) after recovery = %v, %v", k, ok, err)
				}
			}
			record(t, Figure{Backend: kind, Errors: errs, Samples: samples,
				Millis: map[string]float64{"waiter_served_after_release": float64(recovered.Microseconds()) / 1000}})
		})
	}
}

// TestMaxConnections fills the server's max_connections from a pool of
// its own, holds them for a moment, and checks that lock calls on a fresh
// pool fail clearly and in time, and succeed once the connections are
// given back. Every other client of the server is refused meanwhile, so
// it runs only in the long run or with KANNUKI_CHAOS_EXHAUST=1.
func TestMaxConnections(t *testing.T) {
	if !exhaustion() {
		t.Skip("fills the servers' max_connections: set KANNUKI_CHAOS_EXHAUST=1 or run the long version")
	}
	for _, kind := range dbKinds {
		t.Run(kind, func(t *testing.T) { // one at a time: each needs the whole server
			ctx := context.Background()
			// A Locker whose pool has no connection yet: every call must dial.
			if isPG(kind) {
				pgAdmin(t) // skips without the database
			} else {
				mysqlAdmin(t)
			}
			b := mustBackend(t, backendConfig{Kind: kind, MaxConns: 4, AppName: "kannuki-chaos-maxconn", Lazy: true})
			l := kannuki.New(b, kannuki.Options{KeepaliveInterval: 100 * time.Millisecond})
			key := "chaos/maxconn/" + randHex(4)

			release, filled := fillServer(t, kind)
			defer release()
			errs := map[string]int64{}
			samples := map[string]string{}
			start := time.Now()
			ok, err := l.TryLock(ctx, key, func(context.Context) error { return nil })
			if ok || err == nil {
				t.Errorf("TryLock with the server full = (%v, %v); want an error", ok, err)
			} else {
				errs["try"]++
				samples["try"] = err.Error()
				if saidonce.Problem(err.Error()) != "" {
					t.Errorf("unclear error: %v", err)
				}
				if errors.Is(err, kannuki.ErrPoolExhausted) {
					t.Errorf("TryLock with the server full: %v; the server refused, the pool had room: want the server's error, not ErrPoolExhausted", err)
				}
			}
			wait := 500 * time.Millisecond
			err = l.WithLock(ctx, key, func(context.Context) error { return nil }, kannuki.Timeout(wait))
			if err == nil {
				t.Error("WithLock succeeded with the server full")
			} else {
				errs["timed"]++
				samples["timed"] = err.Error()
			}
			if d := time.Since(start); d > 2*wait+2*hangGuard {
				t.Errorf("the calls with the server full took %s", d)
			}
			release()
			// Recovery: the same Locker works again.
			t0 := time.Now()
			for {
				ok, err := l.TryLock(ctx, key, func(context.Context) error { return nil })
				if ok && err == nil {
					break
				}
				if time.Since(t0) > 3*hangGuard {
					t.Fatalf("no recovery %s after the connections were given back: %v", time.Since(t0), err)
				}
				time.Sleep(20 * time.Millisecond)
			}
			rec := time.Since(t0)
			t.Logf("%s: filled %d connections; try: %s; recovered in %s", kind, filled, samples["try"], rec.Round(time.Millisecond))
			record(t, Figure{Backend: kind, Counts: map[string]int64{"connections_filled": int64(filled)}, Errors: errs, Samples: samples,
				Millis: map[string]float64{"time_to_recover": float64(rec.Microseconds()) / 1000}})
		})
	}
}

// fillServer opens connections to kind's server until it refuses one,
// for at most two seconds, and returns a function that closes them all.
func fillServer(t *testing.T, kind string) (release func(), n int) {
	t.Helper()
	var closers []func()
	released := false
	release = func() {
		if released {
			return
		}
		released = true
		for _, c := range closers {
			c()
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for n < 1000 {
		var err error
		if isPG(kind) {
			var c *pgx.Conn
			c, err = pgx.Connect(ctx, pgDSN("", "kannuki-chaos-filler", ""))
			if err == nil {
				closers = append(closers, func() { _ = c.Close(context.Background()) })
			}
		} else {
			mc, _ := mysqlConfig("", nil)
			db, _ := sql.Open("mysql", mc.FormatDSN())
			db.SetMaxOpenConns(1)
			var conn *sql.Conn
			conn, err = db.Conn(ctx)
			if err == nil {
				closers = append(closers, func() { conn.Close(); db.Close() })
			} else {
				db.Close()
			}
		}
		if err != nil {
			t.Logf("server refused connection %d: %v", n+1, err)
			return release, n
		}
		n++
	}
	release()
	t.Fatalf("the server accepted %d connections without refusing one", n)
	return nil, 0
}

// TestDialErrorCause: when the pool cannot open a connection (server
// down, database missing, max_connections reached), a timed wait or a try
// must report that cause, not ErrPoolExhausted: the pool had room, the
// server refused.
func TestDialErrorCause(t *testing.T) {
	for _, kind := range dbKinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			dsn := "postgres://postgres@127.0.0.1:1/test?sslmode=disable&connect_timeout=2"
			if kind == kindMySQL {
				dsn = "root@tcp(127.0.0.1:1)/test?timeout=2s"
			}
			b := mustBackend(t, backendConfig{Kind: kind, DSN: dsn, Lazy: true, MaxConns: 4})
			l := kannuki.New(b, kannuki.Options{})
			ctx, cancel := context.WithTimeout(context.Background(), hangGuard)
			defer cancel()
			fn := func(context.Context) error { return nil }
			check := func(what string, err error) {
				t.Helper()
				switch {
				case err == nil:
					t.Errorf("%s succeeded with the server unreachable", what)
				case errors.Is(err, kannuki.ErrPoolExhausted):
					t.Errorf("%s with the server unreachable (an empty pool with room for 4): %v; want the dial error, not ErrPoolExhausted", what, err)
				case !strings.Contains(err.Error(), "refused"):
					t.Errorf("%s with the server unreachable: %v; the cause (connection refused) is missing", what, err)
				}
			}
			check("timed WithLock", l.WithLock(ctx, "chaos/dial", fn, kannuki.Timeout(time.Second)))
			_, err := l.TryLock(ctx, "chaos/dial", fn)
			check("TryLock", err)
			check("WithLock without timeout", l.WithLock(ctx, "chaos/dial", fn))
		})
	}
}
