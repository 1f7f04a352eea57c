package kannukipgxv5

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kannuki-go/kannuki/keys"
	"github.com/kannuki-go/kannuki/store"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/kannuki-go/kannuki/internal/pgsql"
)

func TestAcquireRelease(t *testing.T) {
	pool := newPool(t, 4)
	b := New(pool, Options{})
	obs := newObserver(t)
	ctx, cancel := guardCtx()
	defer cancel()

	for _, name := range []string{"bigint", "pair"} {
		t.Run(name, func(t *testing.T) {
			k := newKey(t, "k")
			if name == "pair" {
				var err error
				k, err = keys.Advisory{Namespace: 7}.Derive("", k.String)
				if err != nil {
					t.Fatal(err)
				}
			}
			if held, err := b.Held(ctx, k); err != nil || held {
				t.Fatalf("Held before Acquire = %v, %v", held, err)
			}
			l := mustAcquire(t, b, k, excl(store.WaitForever))
			if got := obs.holders(k); !slices.Equal(got, []uint32{l.PID()}) {
				t.Fatalf("holders = %v, want the lease's session %d", got, l.PID())
			}
			if held, err := b.Held(ctx, k); err != nil || !held {
				t.Fatalf("Held while held = %v, %v", held, err)
			}
			// Relock, in the key's form: the same session holds it again,
			// for the new lease only.
			pid := l.PID()
			next, err := l.(store.Relocker).Relock(ctx)
			if err != nil || next == nil {
				t.Fatalf("Relock = %v, %v; want a new lease", next, err)
			}
			if err := l.Release(ctx); !errors.Is(err, store.ErrReleased) {
				t.Fatalf("Release after Relock = %v, want ErrReleased", err)
			}
			l = next.(heldLease)
			if got := obs.holders(k); l.PID() != pid || !slices.Equal(got, []uint32{pid}) {
				t.Fatalf("after Relock: holders %v, lease's session %d; want %d", got, l.PID(), pid)
			}
			canceled, cancelNow := context.WithCancel(ctx)
			cancelNow()
			if err := l.Release(canceled); err != nil {
				t.Fatalf("Release with a canceled context: %v", err)
			}
			if got := obs.rows(k); len(got) != 0 {
				t.Fatalf("pg_locks after Release: %v", got)
			}
			if err := l.Release(ctx); !errors.Is(err, store.ErrReleased) {
				t.Fatalf("second Release = %v, want ErrReleased", err)
			}
			if err := l.Check(ctx); err == nil {
				t.Fatal("Check after Release succeeded")
			}
			poolHoldsNone(t, pool)
		})
	}
}

// TestMyLock: a Go-held lock on "my_lock" shows in pg_locks with the ids
// of KEYS.md, as the Ruby gem's would.
func TestMyLock(t *testing.T) {
	pool := newPool(t, 2)
	b := New(pool, Options{})
	k, err := keys.Ruby{}.Derive("", "my_lock")
	if err != nil {
		t.Fatal(err)
	}
	// The key is fixed, and other tests may hold it: wait our turn.
	ctx, cancel := guardCtx()
	defer cancel()
	ls, err := b.Acquire(ctx, k, excl(20*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer mustRelease(t, ls)
	l := ls.(heldLease)
	obs := newObserver(t)
	var n int
	err = obs.c.QueryRow(ctx, `SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'
		AND classid = 2113435373 AND objid = 2183269011 AND objsubid = 1 AND granted AND pid = $1
		AND database = (SELECT oid FROM pg_database WHERE datname = current_database())`, int32(l.PID())).Scan(&n)
	if err != nil || n != 1 {
		t.Fatalf("pg_locks rows for my_lock held by %d: %d, %v", l.PID(), n, err)
	}
}

func TestTryHeld(t *testing.T) {
	pool := newPool(t, 4)
	b := New(pool, Options{})
	k := newKey(t, "k")
	holder := mustAcquire(t, b, k, excl(0))
	defer mustRelease(t, holder)
	ctx, cancel := guardCtx()
	defer cancel()
	for _, req := range []store.Request{excl(0), shared(0)} {
		start := time.Now()
		_, err := b.Acquire(ctx, k, req)
		notAcquired(t, err)
		if time.Since(start) > hangGuard/2 {
			t.Fatalf("a try took %s", time.Since(start))
		}
	}
	poolHoldsNone(t, pool)
}

// TestTimedWait: a wait up to d gives up no sooner than d, and in one
// statement on the server: the waiter's query_start does not change while
// it waits, and its query carries the key's comment.
func TestTimedWait(t *testing.T) {
	pool := newPool(t, 4)
	b := New(pool, Options{})
	obs := newObserver(t)
	k := newKey(t, "k")
	holder := mustAcquire(t, b, k, excl(0))
	defer mustRelease(t, holder)
	ctx, cancel := guardCtx()
	defer cancel()

	const d = 300 * time.Millisecond
	start := time.Now()
	_, err := b.Acquire(ctx, k, excl(d))
	notAcquired(t, err)
	if el := time.Since(start); el < d {
		t.Fatalf("a wait up to %s gave up after %s", d, el)
	}

	const long = 3 * time.Second
	done := make(chan error, 1)
	start = time.Now()
	go func() {
		_, err := b.Acquire(ctx, k, excl(long))
		done <- err
	}()
	pid := obs.waitWaiters(k, 1)[0]
	var first time.Time
	var waitQuery string
	samples := 0
	for {
		var qs time.Time
		var waitType, query string
		err := obs.c.QueryRow(ctx, "SELECT query_start, query, COALESCE(wait_event_type, '') FROM pg_stat_activity WHERE pid = $1", int32(pid)).Scan(&qs, &query, &waitType)
		if err != nil {
			t.Fatal(err)
		}
		if waitType != "Lock" {
			break // the wait is over
		}
		if first.IsZero() {
			first, waitQuery = qs, query
		} else if !qs.Equal(first) {
			t.Fatalf("query_start of the waiter changed from %s to %s: more than one statement", first, qs)
		}
		samples++
		time.Sleep(100 * time.Millisecond)
	}
	err = <-done
	notAcquired(t, err)
	if el := time.Since(start); el < long {
		t.Fatalf("a wait up to %s gave up after %s", long, el)
	}
	if samples < 10 {
		t.Fatalf("only %d samples of the waiting session", samples)
	}
	if !strings.Contains(waitQuery, pgsql.Comment(k.String)) {
		t.Fatalf("the waiting statement %q does not name the key", waitQuery)
	}
	poolHoldsNone(t, pool)
}

// TestHandoff: a blocked waiter gets the lock when the holder releases.
func TestHandoff(t *testing.T) {
	pool := newPool(t, 4)
	b := New(pool, Options{})
	obs := newObserver(t)
	for _, wait := range []time.Duration{store.WaitForever, 20 * time.Second} {
		k := newKey(t, "k")
		holder := mustAcquire(t, b, k, excl(0))
		got := make(chan store.Lease, 1)
		go func() {
			ctx, cancel := guardCtx()
			defer cancel()
			l, err := b.Acquire(ctx, k, excl(wait))
			if err != nil {
				t.Errorf("waiter: %v", err)
			}
			got <- l
		}()
		obs.waitWaiters(k, 1)
		released := time.Now()
		mustRelease(t, holder)
		l := <-got
		if l == nil {
			return
		}
		t.Logf("wait %v: handoff after %s", wait, time.Since(released))
		if h := obs.holders(k); !slices.Equal(h, []uint32{pidOf(l)}) {
			t.Fatalf("holders %v, want the waiter", h)
		}
		mustRelease(t, l)
	}
	poolHoldsNone(t, pool)
}

// TestExclusion: 16 goroutines contend for one key; a counter kept outside
// the lock (a plain atomic, and a row updated with no transaction) shows
// that no two ever held it at once.
func TestExclusion(t *testing.T) {
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) { testExclusion(t, m.opts) })
	}
}

func testExclusion(t *testing.T, opts Options) {
	const goroutines, cycles = 16, 2000
	pool := newPool(t, goroutines+2)
	b := New(pool, opts)
	k := newKey(t, "k")
	ctx, cancel := guardCtx()
	defer cancel()
	// The counter row lives behind a pool of its own: the holder's
	// connection may be shared, and the lock's pool may be all waiters.
	counter := newPool(t, 4)
	table := "kannukipgxv5_excl_" + randHex()
	if _, err := counter.Exec(ctx, "CREATE TABLE "+table+" (n int NOT NULL)"); err != nil {
		t.Fatal(err)
	}
	defer func() { _, _ = counter.Exec(context.Background(), "DROP TABLE "+table) }()
	if _, err := counter.Exec(ctx, "INSERT INTO "+table+" VALUES (0)"); err != nil {
		t.Fatal(err)
	}

	var inside, maxInside, total atomic.Int64
	var wg sync.WaitGroup
	var next atomic.Int64
	for g := range goroutines {
		wg.Go(func() {
			for next.Add(1) <= cycles {
				req := excl(store.WaitForever)
				if g%4 == 3 {
					req = excl(20 * time.Second) // some timed waits too
				}
				l, err := b.Acquire(ctx, k, req)
				if err != nil {
					t.Errorf("Acquire: %v", err)
					return
				}
				n := inside.Add(1)
				if n > maxInside.Load() {
					maxInside.Store(n)
				}
				// Read, then write: two holders at once would lose updates.
				var v int
				if err := counter.QueryRow(ctx, "SELECT n FROM "+table).Scan(&v); err != nil {
					t.Error(err)
				}
				if _, err := counter.Exec(ctx, "UPDATE "+table+" SET n = $1", v+1); err != nil {
					t.Error(err)
				}
				inside.Add(-1)
				total.Add(1)
				if err := l.Release(ctx); err != nil {
					t.Errorf("Release: %v", err)
					return
				}
			}
		})
	}
	wg.Wait()
	var v int64
	if err := counter.QueryRow(ctx, "SELECT n FROM "+table).Scan(&v); err != nil {
		t.Fatal(err)
	}
	if maxInside.Load() != 1 || v != total.Load() || total.Load() != cycles {
		t.Fatalf("max holders at once %d, row counter %d, cycles %d (want 1, %d, %d)", maxInside.Load(), v, total.Load(), cycles, cycles)
	}
	poolHoldsNone(t, pool)
}

// TestShared: many readers at once, writers excluded, the shared unlock
// used, nothing left behind.
func TestShared(t *testing.T) {
	pool := newPool(t, 8)
	b := New(pool, Options{})
	obs := newObserver(t)
	k := newKey(t, "k")
	ctx, cancel := guardCtx()
	defer cancel()

	var readers []heldLease
	for range 4 {
		readers = append(readers, mustAcquire(t, b, k, shared(0)))
	}
	if rows := obs.rows(k); len(rows) != 4 || rows[0].Mode != "ShareLock" {
		t.Fatalf("pg_locks with 4 readers: %v", rows)
	}
	_, err := b.Acquire(ctx, k, excl(0))
	notAcquired(t, err)
	_, err = b.Acquire(ctx, k, excl(50*time.Millisecond))
	notAcquired(t, err)

	// A writer waiting behind the readers gets in when the last one leaves.
	writer := make(chan store.Lease, 1)
	go func() {
		l, err := b.Acquire(ctx, k, excl(store.WaitForever))
		if err != nil {
			t.Errorf("writer: %v", err)
		}
		writer <- l
	}()
	obs.waitWaiters(k, 1)
	for _, r := range readers {
		mustRelease(t, r) // pg_advisory_unlock_shared, else Release would fail
	}
	w := <-writer
	if w == nil {
		return
	}
	_, err = b.Acquire(ctx, k, shared(0))
	notAcquired(t, err)
	mustRelease(t, w)
	if rows := obs.rows(k); len(rows) != 0 {
		t.Fatalf("pg_locks after all released: %v", rows)
	}
	poolHoldsNone(t, pool)
}

// TestOddKeys: keys that are accepted but would break naive SQL building
// lock correctly, show safely in comments and never reach the SQL text.
func TestOddKeys(t *testing.T) {
	pool := newPool(t, 4)
	b := New(pool, Options{})
	obs := newObserver(t)
	ctx, cancel := guardCtx()
	defer cancel()
	table := "kannukipgxv5_canary_" + randHex()
	if _, err := pool.Exec(ctx, "CREATE TABLE "+table+" (x int)"); err != nil {
		t.Fatal(err)
	}
	defer func() { _, _ = pool.Exec(context.Background(), "DROP TABLE IF EXISTS "+table) }()

	for _, name := range []string{
		"*/ DROP TABLE " + table + "; --",
		"'; DROP TABLE " + table + "; --",
		`"quoted" and 'single' and \backslash`,
		"/* nested */ comment",
		"newline\nand\ttab",
		"percent %2A and star *",
		"日本語のキー",
		strings.Repeat("long/", 300),
	} {
		k, err := keys.Ruby{}.Derive("kannukipgxv5-test/"+randHex(), name)
		if err != nil {
			t.Fatal(err)
		}
		holder := mustAcquire(t, b, k, excl(0))
		// A waiter sends the statement carrying the key's comment.
		done := make(chan error, 1)
		go func() {
			l, err := b.Acquire(ctx, k, excl(store.WaitForever))
			if err == nil {
				err = l.Release(ctx)
			}
			done <- err
		}()
		pid := obs.waitWaiters(k, 1)[0]
		var query string
		if err := obs.c.QueryRow(ctx, "SELECT query FROM pg_stat_activity WHERE pid = $1", int32(pid)).Scan(&query); err != nil {
			t.Fatal(err)
		}
		if !strings.HasSuffix(query, pgsql.Comment(k.String)) || strings.Count(query, "*/") != 1 {
			t.Fatalf("waiting statement %q", query)
		}
		infos, err := b.Locks(ctx)
		if err != nil {
			t.Fatal(err)
		}
		found := false
		for _, li := range infos {
			if li.PID == int64(pid) && !li.Granted {
				found = true
				if li.Name != pgsql.NameFromQuery(pgsql.Comment(k.String)) || li.ID != k.ID {
					t.Fatalf("Locks shows the waiter as %+v", li)
				}
			}
		}
		if !found {
			t.Fatalf("Locks does not show the waiter %d: %+v", pid, infos)
		}
		mustRelease(t, holder)
		if err := <-done; err != nil {
			t.Fatalf("waiter: %v", err)
		}
	}
	var n int
	if err := pool.QueryRow(ctx, "SELECT count(*) FROM "+table).Scan(&n); err != nil {
		t.Fatalf("the canary table is gone: %v", err)
	}
	poolHoldsNone(t, pool)
}

// TestDeadlock: PostgreSQL's 40P01 becomes ErrDeadlock. Kannuki's own
// sessions hold one lock each and cannot close a cycle, so the test leaks
// a lock onto the pool's only connection by hand (what Kannuki never
// does) and closes the cycle with a raw session.
func TestDeadlock(t *testing.T) {
	pool := newPool(t, 1)
	b := New(pool, Options{})
	obs := newObserver(t)
	other := newObserver(t) // the raw session of the cycle
	ka, kb := newKey(t, "a"), newKey(t, "b")
	ctx, cancel := guardCtx()
	defer cancel()

	pc, err := pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pc.Exec(ctx, "SELECT pg_advisory_lock($1)", ka.ID); err != nil {
		t.Fatal(err)
	}
	pc.Release() // the pool's connection now holds a
	// The raw session must not run the deadlock check first.
	if _, err := other.c.Exec(ctx, "SET deadlock_timeout = '60s'"); err != nil {
		t.Fatal(err)
	}
	if _, err := other.c.Exec(ctx, "SELECT pg_advisory_lock($1)", kb.ID); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := b.Acquire(ctx, kb, excl(store.WaitForever)) // holds a, waits for b
		done <- err
	}()
	obs.waitWaiters(kb, 1)
	otherDone := make(chan error, 1)
	go func() {
		_, err := other.c.Exec(ctx, "SELECT pg_advisory_lock($1)", ka.ID) // holds b, waits for a
		otherDone <- err
	}()
	err = <-done
	if !errors.Is(err, store.ErrDeadlock) || errors.Is(err, store.ErrNotAcquired) {
		t.Fatalf("Acquire in a deadlock = %v, want ErrDeadlock", err)
	}
	pool.Reset() // ends the session holding a
	if err := <-otherDone; err != nil {
		t.Fatal(err)
	}
	if _, err := other.c.Exec(ctx, "SELECT pg_advisory_unlock_all()"); err != nil {
		t.Fatal(err)
	}
	obs.waitFor("the locks to go", func() bool { return len(obs.rows(ka))+len(obs.rows(kb)) == 0 })
}

// TestStatementTimeout: a session statement_timeout shorter than the wait
// ends it on the server; that is reported as not acquired, with nothing
// held.
func TestStatementTimeout(t *testing.T) {
	cfg := poolConfig(t)
	cfg.ConnConfig.RuntimeParams["statement_timeout"] = "200"
	cfg.MaxConns = 2
	pool := openPool(t, cfg)
	ctx, cancel := guardCtx()
	defer cancel()
	b := New(pool, Options{})
	obs := newObserver(t)
	k := newKey(t, "k")
	holder := mustAcquire(t, b, k, excl(0))
	released := false
	t.Cleanup(func() { // a failed assertion must not leave the pool's cleanup waiting on a held lock
		if !released {
			_ = holder.Release(context.Background())
		}
	})
	_, err := b.Acquire(ctx, k, excl(store.WaitForever))
	var pgErr *pgconn.PgError
	if !errors.Is(err, store.ErrNotAcquired) || !errors.As(err, &pgErr) || pgErr.Code != pgsql.CodeQueryCanceled {
		t.Fatalf("wait cut by statement_timeout: %v", err)
	}
	if h := obs.holders(k); !slices.Equal(h, []uint32{holder.PID()}) {
		t.Fatalf("holders %v", h)
	}
	released = true
	mustRelease(t, holder)
	poolHoldsNone(t, pool)
}
