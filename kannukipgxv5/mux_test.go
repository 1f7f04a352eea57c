package kannukipgxv5

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kannuki-go/kannuki/store"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/kannuki-go/kannuki"
	"github.com/kannuki-go/kannuki/internal/pgsql"
)

// countingBackend counts the keepalive checks the Locker makes on its
// leases.
type countingBackend struct {
	*Backend
	checks atomic.Int64
}

func (b *countingBackend) Acquire(ctx context.Context, k store.Key, req store.Request) (store.Lease, error) {
	l, err := b.Backend.Acquire(ctx, k, req)
	if err != nil {
		return nil, err
	}
	return &countingLease{heldLease: l.(heldLease), checks: &b.checks}, nil
}

type countingLease struct {
	heldLease
	checks *atomic.Int64
}

func (l *countingLease) Check(ctx context.Context) error {
	l.checks.Add(1)
	return l.heldLease.Check(ctx)
}

// advisoryHolders maps the bigint advisory locks granted in the current
// database to the sessions holding them.
func (o *observer) advisoryHolders() map[int64][]uint32 {
	o.t.Helper()
	ctx, cancel := guardCtx()
	defer cancel()
	rows, err := o.c.Query(ctx, `SELECT classid::bigint, objid::bigint, pid FROM pg_locks
		WHERE locktype = 'advisory' AND objsubid = 1 AND granted
		AND database = (SELECT oid FROM pg_database WHERE datname = current_database())`, pgx.QueryExecModeSimpleProtocol)
	if err != nil {
		o.t.Fatalf("observer: %v", err)
	}
	defer rows.Close()
	out := map[int64][]uint32{}
	for rows.Next() {
		var classid, objid int64
		var pid int32
		if err := rows.Scan(&classid, &objid, &pid); err != nil {
			o.t.Fatalf("observer: %v", err)
		}
		id := int64(uint64(classid)<<32 | uint64(objid))
		out[id] = append(out[id], uint32(pid))
	}
	if err := rows.Err(); err != nil {
		o.t.Fatalf("observer: %v", err)
	}
	return out
}

// sessionGone waits until the server has ended the session pid.
func (o *observer) sessionGone(pid uint32) {
	o.t.Helper()
	o.waitFor(fmt.Sprintf("session %d to end", pid), func() bool {
		var alive bool
		err := o.c.QueryRow(context.Background(), "SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE pid = $1)", int32(pid)).Scan(&alive)
		return err == nil && !alive
	})
}

// TestMuxTenThousand: 10,000 goroutines each hold a distinct key at once
// through a Locker, on a pool of 16 connections. pg_locks shows all of
// them granted, to no more sessions than the shared-connection bound
// (half the pool); the keepalive of 10,000 handles costs a small fraction
// of a round trip per check; after the release nothing is left.
func TestMuxTenThousand(t *testing.T) {
	const n, maxConns = 10_000, 16
	cfg := poolConfig(t)
	cfg.MaxConns = maxConns
	var writes atomic.Int64
	dial := cfg.ConnConfig.DialFunc
	cfg.ConnConfig.DialFunc = func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := dial(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return countingConn{c, &writes}, nil
	}
	pool := openPool(t, cfg)
	be := &countingBackend{Backend: New(pool, Options{})}
	bound := Options{}.sharedConns(maxConns)
	const keepalive = time.Second
	l := kannuki.New(be, kannuki.Options{KeyPrefix: "kannukipgxv5-test-" + randHex(), KeepaliveInterval: keepalive})
	obs := newObserver(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute) // a hang guard only
	defer cancel()

	ids := make([]int64, n)
	for i := range ids {
		k, err := l.Key(fmt.Sprint("k", i))
		if err != nil {
			t.Fatal(err)
		}
		ids[i] = k.ID
	}
	var acquired, done sync.WaitGroup
	var failed atomic.Int64
	release := make(chan struct{})
	var releaseOnce sync.Once
	letGo := func() { releaseOnce.Do(func() { close(release) }) }
	defer func() { letGo(); done.Wait() }() // also when the test fails early
	handles := make([]*kannuki.Handle, n)
	start := time.Now()
	for i := range n {
		acquired.Add(1)
		done.Go(func() {
			h, err := l.Acquire(ctx, fmt.Sprint("k", i))
			handles[i] = h
			acquired.Done()
			if err != nil {
				failed.Add(1)
				t.Errorf("Acquire k%d: %v", i, err)
				return
			}
			<-release
			if err := h.Release(ctx); err != nil {
				t.Errorf("Release k%d: %v", i, err)
			}
		})
	}
	acquired.Wait()
	t.Logf("%d keys held after %s", n, time.Since(start).Round(time.Millisecond))
	if failed.Load() > 0 {
		letGo()
		done.Wait()
		t.FailNow()
	}

	held := obs.advisoryHolders()
	sessions := map[uint32]int{}
	for i, id := range ids {
		pids := held[id]
		if len(pids) != 1 {
			t.Fatalf("key k%d: held by %v in pg_locks, want one session", i, pids)
		}
		sessions[pids[0]]++
	}
	t.Logf("%d keys held by %d sessions (bound %d, pool %d): %v", n, len(sessions), bound, maxConns, sessions)
	if len(sessions) > bound || len(sessions) > maxConns {
		t.Fatalf("%d sessions hold the keys, want at most %d", len(sessions), bound)
	}

	// Keepalive: wait until every handle was checked about twice, and
	// count the round trips meanwhile.
	w0, c0 := writes.Load(), be.checks.Load()
	obs.waitFor("two keepalive rounds", func() bool { return be.checks.Load()-c0 >= 2*n })
	w, c := writes.Load()-w0, be.checks.Load()-c0
	t.Logf("keepalive: %d checks, %d round trips", c, w)
	if w*10 > c {
		t.Errorf("keepalive: %d round trips for %d checks: the connections do not share their checks", w, c)
	}
	for i, h := range handles {
		if err := h.Err(); err != nil {
			t.Fatalf("handle k%d lost: %v", i, err)
		}
	}

	start = time.Now()
	letGo()
	done.Wait()
	t.Logf("released after %s", time.Since(start).Round(time.Millisecond))
	held = obs.advisoryHolders()
	for i, id := range ids {
		if pids := held[id]; len(pids) != 0 {
			t.Fatalf("key k%d still held by %v after its release", i, pids)
		}
	}
	if m := be.mux.size(); m != 0 {
		t.Fatalf("%d shared connections left with no lock held", m)
	}
	poolHoldsNone(t, pool)
}

// TestMuxSameKey: PostgreSQL grants a session the advisory locks it holds
// again, so a second acquisition of a key this process holds on a shared
// connection must not land on that connection: it is refused (exclusive)
// or taken on another session (shared with shared), never granted on top.
func TestMuxSameKey(t *testing.T) {
	for _, conns := range []int{1, 4} {
		t.Run(fmt.Sprint("shared conns ", conns), func(t *testing.T) {
			pool := newPool(t, 6)
			b := New(pool, Options{SharedConns: conns})
			obs := newObserver(t)
			ctx, cancel := guardCtx()
			defer cancel()
			k := newKey(t, "k")

			for _, first := range []store.Request{excl(0), shared(0)} {
				a := mustAcquire(t, b, k, first)
				for _, req := range []store.Request{excl(0), excl(50 * time.Millisecond)} {
					l, err := b.Acquire(ctx, k, req)
					if err == nil {
						_ = l.Release(ctx)
						t.Fatalf("%s held, %s acquired it again in the same process", first.Mode, req.Mode)
					}
					notAcquired(t, err)
				}
				if first.Mode == store.ModeExclusive {
					_, err := b.Acquire(ctx, k, shared(0))
					notAcquired(t, err)
				}
				if h := obs.holders(k); !slices.Equal(h, []uint32{a.PID()}) {
					t.Fatalf("holders %v, want only %d", h, a.PID())
				}
				mustRelease(t, a)
			}

			// Readers of one key from one backend: distinct sessions.
			r1 := mustAcquire(t, b, k, shared(0))
			r2 := mustAcquire(t, b, k, shared(0))
			if r1.PID() == r2.PID() {
				t.Fatalf("two shared holders of %q on one session %d", k.String, r1.PID())
			}
			if h := obs.holders(k); len(h) != 2 {
				t.Fatalf("holders %v, want two sessions", h)
			}
			_, err := b.Acquire(ctx, k, excl(0))
			notAcquired(t, err)
			mustRelease(t, r1)
			_, err = b.Acquire(ctx, k, excl(0))
			notAcquired(t, err)
			mustRelease(t, r2)
			mustRelease(t, mustAcquire(t, b, k, excl(0)))

			// Two Lockers over one backend (no local queue between them).
			l1 := kannuki.New(b, kannuki.Options{})
			l2 := kannuki.New(b, kannuki.Options{})
			h, err := l1.Acquire(ctx, k.String)
			if err != nil {
				t.Fatal(err)
			}
			ok, err := l2.TryLock(ctx, k.String, func(context.Context) error { return nil })
			if ok || err != nil {
				t.Fatalf("second Locker's TryLock of a held key = %v, %v; want false, nil", ok, err)
			}
			err = l2.WithLock(ctx, k.String, func(context.Context) error { return nil }, kannuki.Timeout(50*time.Millisecond))
			if !errors.Is(err, store.ErrNotAcquired) {
				t.Fatalf("second Locker's WithLock of a held key = %v, want ErrNotAcquired", err)
			}
			if err := h.Release(ctx); err != nil {
				t.Fatal(err)
			}
			if rows := obs.rows(k); len(rows) != 0 {
				t.Fatalf("pg_locks after the releases: %v", rows)
			}
			if m := b.mux.size(); m != 0 {
				t.Fatalf("%d shared connections left with no lock held", m)
			}
			poolHoldsNone(t, pool)
		})
	}
}

// TestMuxExclusion: 32 goroutines of one backend take 4 keys, exclusive
// and shared, by tries, timed waits and waits forever, through 2 shared
// connections and a pool of 8. Counters kept outside the locks show that
// no writer ever overlapped another holder.
func TestMuxExclusion(t *testing.T) {
	const goroutines, cycles, nkeys = 32, 4000, 4
	pool := newPool(t, 8)
	b := New(pool, Options{SharedConns: 2})
	obs := newObserver(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	keys := make([]store.Key, nkeys)
	for i := range keys {
		keys[i] = newKey(t, fmt.Sprint(i))
	}
	var writers, readers [nkeys]atomic.Int32
	var granted, refused [2]atomic.Int64
	var next atomic.Int64
	var wg sync.WaitGroup
	for range goroutines {
		wg.Go(func() {
			for next.Add(1) <= cycles {
				i := rand.IntN(nkeys)
				req := store.Request{Mode: store.ModeExclusive}
				if rand.IntN(3) == 0 {
					req.Mode = store.ModeShared
				}
				switch rand.IntN(3) {
				case 0: // a try
				case 1:
					req.Wait = time.Duration(1+rand.IntN(5)) * time.Millisecond
				default:
					req.Wait = store.WaitForever
				}
				l, err := b.Acquire(ctx, keys[i], req)
				if err != nil {
					if !errors.Is(err, store.ErrNotAcquired) {
						t.Errorf("Acquire: %v", err)
						return
					}
					refused[req.Mode].Add(1)
					continue
				}
				granted[req.Mode].Add(1)
				if req.Mode == store.ModeExclusive {
					if w := writers[i].Add(1); w != 1 || readers[i].Load() != 0 {
						t.Errorf("key %d: a writer got in with %d writers and %d readers", i, w, readers[i].Load())
					}
				} else {
					readers[i].Add(1)
					if w := writers[i].Load(); w != 0 {
						t.Errorf("key %d: a reader got in with %d writers", i, w)
					}
				}
				time.Sleep(time.Duration(rand.IntN(200)) * time.Microsecond)
				if req.Mode == store.ModeExclusive {
					writers[i].Add(-1)
				} else {
					readers[i].Add(-1)
				}
				if err := l.Release(ctx); err != nil {
					t.Errorf("Release: %v", err)
					return
				}
			}
		})
	}
	wg.Wait()
	t.Logf("exclusive %d granted, %d refused; shared %d granted, %d refused",
		granted[0].Load(), refused[0].Load(), granted[1].Load(), refused[1].Load())
	for _, k := range keys {
		if rows := obs.rows(k); len(rows) != 0 {
			t.Errorf("pg_locks rows left for %q: %v", k.String, rows)
		}
	}
	if m := b.mux.size(); m != 0 {
		t.Fatalf("%d shared connections left with no lock held", m)
	}
	poolHoldsNone(t, pool)
}

// TestMuxConnKilled: when the session of a shared connection is
// terminated, every lease on it reports the loss: Check and Release match
// ErrLockLost, after a single failed round trip; the key can be taken
// again on a new session.
func TestMuxConnKilled(t *testing.T) {
	const n = 50
	pool := newPool(t, 4)
	b := New(pool, Options{SharedConns: 1})
	obs := newObserver(t)
	ctx, cancel := guardCtx()
	defer cancel()
	keys := make([]store.Key, n)
	leases := make([]heldLease, n)
	for i := range keys {
		keys[i] = newKey(t, fmt.Sprint(i))
		leases[i] = mustAcquire(t, b, keys[i], excl(0))
	}
	pid := leases[0].PID()
	for i, l := range leases {
		if l.PID() != pid {
			t.Fatalf("lease %d on session %d, lease 0 on %d: want one shared connection", i, l.PID(), pid)
		}
	}
	var killed bool
	if err := obs.c.QueryRow(ctx, "SELECT pg_terminate_backend($1)", int32(pid)).Scan(&killed); err != nil || !killed {
		t.Fatalf("pg_terminate_backend(%d) = %v, %v", pid, killed, err)
	}
	obs.sessionGone(pid)
	// A check may be answered by the connection's last success for a
	// while (a quarter of the time since the lease's previous check);
	// then its round trip fails.
	var err error
	obs.waitFor("a check to fail", func() bool {
		err = leases[0].Check(ctx)
		return err != nil
	})
	if !errors.Is(err, store.ErrLockLost) {
		t.Fatalf("Check after the kill = %v, want ErrLockLost", err)
	}
	for i, l := range leases {
		if err := l.Check(ctx); !errors.Is(err, store.ErrLockLost) {
			t.Errorf("lease %d: Check = %v, want ErrLockLost", i, err)
		}
		if l.PID() != 0 {
			t.Errorf("lease %d: PID %d after the loss", i, l.PID())
		}
	}
	for i, l := range leases {
		if err := l.Release(ctx); !errors.Is(err, store.ErrLockLost) {
			t.Errorf("lease %d: Release = %v, want ErrLockLost", i, err)
		}
	}
	for _, k := range keys {
		if rows := obs.rows(k); len(rows) != 0 {
			t.Fatalf("pg_locks rows for %q: %v", k.String, rows)
		}
	}
	again := mustAcquire(t, b, keys[0], excl(0))
	if again.PID() == pid || again.PID() == 0 {
		t.Fatalf("retaken on session %d (the dead one was %d)", again.PID(), pid)
	}
	mustRelease(t, again)
	if m := b.mux.size(); m != 0 {
		t.Fatalf("%d shared connections left with no lock held", m)
	}
	poolHoldsNone(t, pool)
}

// TestMuxConnKilledLocker: through a Locker, every handle on a terminated
// shared connection is told: its Lost channel closes and Err matches
// ErrLockLost.
func TestMuxConnKilledLocker(t *testing.T) {
	const n = 20
	pool := newPool(t, 4)
	be := &countingBackend{Backend: New(pool, Options{SharedConns: 1})}
	l := kannuki.New(be, kannuki.Options{KeyPrefix: "kannukipgxv5-test-" + randHex(), KeepaliveInterval: 100 * time.Millisecond})
	obs := newObserver(t)
	ctx, cancel := guardCtx()
	defer cancel()
	handles := make([]*kannuki.Handle, n)
	for i := range handles {
		h, err := l.Acquire(ctx, fmt.Sprint("k", i))
		if err != nil {
			t.Fatal(err)
		}
		defer h.Release(context.Background())
		handles[i] = h
	}
	k0, err := l.Key("k0")
	if err != nil {
		t.Fatal(err)
	}
	pids := obs.holders(k0)
	terminateHolders(t, k0)
	for i, h := range handles {
		select {
		case <-h.Lost():
		case <-time.After(hangGuard):
			t.Fatalf("handle %d was not told of the loss", i)
		}
		if !errors.Is(h.Err(), store.ErrLockLost) {
			t.Errorf("handle %d: Err = %v, want ErrLockLost", i, h.Err())
		}
		if err := h.Release(ctx); !errors.Is(err, store.ErrLockLost) {
			t.Errorf("handle %d: Release = %v, want ErrLockLost", i, err)
		}
	}
	if len(pids) == 1 {
		obs.sessionGone(pids[0])
	}
	poolHoldsNone(t, pool)
}

// TestMuxUnlockFalse: an unlock on a shared connection that returns false
// means the session does not hold what the books say; the connection is
// destroyed and every lease on it is lost.
func TestMuxUnlockFalse(t *testing.T) {
	p := newSharedPair(t, shared(0))
	ctx, cancel := guardCtx()
	defer cancel()
	unlockAllBehindBack(t, ctx, p.l1.(*muxLease).c)
	if err := p.l1.Release(ctx); !errors.Is(err, store.ErrLockLost) {
		t.Fatalf("Release = %v, want ErrLockLost", err)
	}
	expectLost(t, ctx, "the other lease", p.l2)
	p.obs.sessionGone(p.pid)
	poolHoldsNone(t, p.pool)
}

// sharedPair is two leases taken one after the other on a fresh Backend
// with one shared connection: the first exclusive, the second as asked.
type sharedPair struct {
	pool   *pgxpool.Pool
	b      *Backend
	obs    *observer
	k1, k2 store.Key
	l1, l2 heldLease
	pid    uint32 // the first lease's session
}

func newSharedPair(t *testing.T, second store.Request) sharedPair {
	t.Helper()
	p := sharedPair{pool: newPool(t, 2), obs: newObserver(t), k1: newKey(t, "1"), k2: newKey(t, "2")}
	p.b = New(p.pool, Options{SharedConns: 1})
	p.l1, p.l2 = mustAcquire(t, p.b, p.k1, excl(0)), mustAcquire(t, p.b, p.k2, second)
	p.pid = p.l1.PID()
	return p
}

// unlockAllBehindBack drops every lock of c's session behind the backs
// of the leases on it.
func unlockAllBehindBack(t *testing.T, ctx context.Context, c *sharedConn) {
	t.Helper()
	if err := c.enter(ctx); err != nil {
		t.Fatal(err)
	}
	c.busy()
	_, err := c.pc.Exec(ctx, "SELECT pg_advisory_unlock_all()")
	c.leave()
	if err != nil {
		t.Fatal(err)
	}
}

// expectLost checks that the keepalive and the release of l both report
// its lock lost.
func expectLost(t *testing.T, ctx context.Context, what string, l heldLease) {
	t.Helper()
	if err := l.Check(ctx); !errors.Is(err, store.ErrLockLost) {
		t.Fatalf("%s: Check = %v, want ErrLockLost", what, err)
	}
	if err := l.Release(ctx); !errors.Is(err, store.ErrLockLost) {
		t.Fatalf("%s: Release = %v, want ErrLockLost", what, err)
	}
}

// TestMuxCancelStorm: 3,000 acquisitions of 8 keys by 24 goroutines
// through 2 shared connections, canceled or timed out at random moments
// (before the call, while queued for a shared connection, during the try,
// during a wait, around a grant), leave nothing held: pg_locks shows no
// row of the keys, the shared connections all went back to the pool, and
// the pool's idle connections hold nothing. Exclusion holds throughout.
func TestMuxCancelStorm(t *testing.T) {
	const goroutines, trials, nkeys = 24, 3000, 8
	pool := newPool(t, 10)
	b := New(pool, Options{SharedConns: 2})
	obs := newObserver(t)
	gctx, gcancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer gcancel()
	keys := make([]store.Key, nkeys)
	for i := range keys {
		keys[i] = newKey(t, fmt.Sprint(i))
	}
	var inside [nkeys]atomic.Int32
	var outcomes [3]atomic.Int64 // granted, ended, not acquired
	var next atomic.Int64
	var wg sync.WaitGroup
	for range goroutines {
		wg.Go(func() {
			for next.Add(1) <= trials {
				i := rand.IntN(nkeys)
				delay := time.Duration(rand.IntN(1500)) * time.Microsecond
				var ctx context.Context
				var cancel context.CancelFunc
				switch rand.IntN(4) {
				case 0:
					ctx, cancel = context.WithCancel(gctx)
					cancel()
				case 1, 2:
					ctx, cancel = context.WithCancel(gctx)
					time.AfterFunc(delay, cancel)
				default:
					ctx, cancel = context.WithTimeout(gctx, delay)
				}
				req := excl(0)
				switch rand.IntN(3) {
				case 1:
					req.Wait = time.Duration(1+rand.IntN(3)) * time.Millisecond
				case 2:
					req.Wait = store.WaitForever
				}
				l, err := b.Acquire(ctx, keys[i], req)
				cancel()
				switch {
				case err == nil:
					outcomes[0].Add(1)
					if inside[i].Add(1) != 1 {
						t.Errorf("key %d: two holders at once", i)
					}
					time.Sleep(time.Duration(rand.IntN(300)) * time.Microsecond)
					inside[i].Add(-1)
					if err := l.Release(gctx); err != nil {
						t.Errorf("Release: %v", err)
					}
				case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
					outcomes[1].Add(1)
				case errors.Is(err, store.ErrNotAcquired):
					outcomes[2].Add(1)
				default:
					t.Errorf("Acquire: %v", err)
				}
			}
		})
	}
	wg.Wait()
	t.Logf("%d granted, %d ended by their context, %d not acquired", outcomes[0].Load(), outcomes[1].Load(), outcomes[2].Load())
	for _, k := range keys {
		if rows := obs.rows(k); len(rows) != 0 {
			t.Errorf("pg_locks rows left for %q: %v", k.String, rows)
		}
	}
	if m := b.mux.size(); m != 0 {
		t.Fatalf("%d shared connections left with no lock held", m)
	}
	poolHoldsNone(t, pool)
	// The keys are free for anybody.
	other := New(newPool(t, 1), Options{})
	for _, k := range keys {
		mustRelease(t, mustAcquire(t, other, k, excl(0)))
	}
}

// TestMuxLocksNames: Locks names a holder from its session's last
// statement only when the session holds a single lock; on a shared
// connection holding several it cannot tell which key the comment names.
func TestMuxLocksNames(t *testing.T) {
	pool := newPool(t, 2)
	b := New(pool, Options{SharedConns: 1})
	ctx, cancel := guardCtx()
	defer cancel()
	k1, k2 := newKey(t, "1"), newKey(t, "2")
	l1, l2 := mustAcquire(t, b, k1, excl(0)), mustAcquire(t, b, k2, excl(0))
	byID := func() map[int64]store.LockInfo {
		infos, err := b.Locks(ctx)
		if err != nil {
			t.Fatal(err)
		}
		out := map[int64]store.LockInfo{}
		for _, li := range infos {
			if li.PID == int64(l1.PID()) {
				out[li.ID] = li
			}
		}
		return out
	}
	obs := newObserver(t)
	// Until a keepalive round trip has run, names carry whatever comment
	// the session's last statement had; wait for one that names k2.
	obs.waitFor("a keepalive round trip naming k2", func() bool {
		if err := l2.Check(ctx); err != nil {
			t.Fatal(err)
		}
		var q string
		err := obs.c.QueryRow(ctx, "SELECT query FROM pg_stat_activity WHERE pid = $1", int32(l2.PID())).Scan(&q)
		return err == nil && q == pgsql.Comment(k2.String)
	})
	for id, li := range byID() {
		if li.Name != "" {
			t.Fatalf("lock %d on a session holding two is named %q", id, li.Name)
		}
	}
	mustRelease(t, l2)
	obs.waitFor("a keepalive round trip naming k1", func() bool {
		if err := l1.Check(ctx); err != nil {
			t.Fatal(err)
		}
		return byID()[k1.ID].Name == k1.String
	})
	mustRelease(t, l1)
}

// stallProxy forwards TCP connections to PostgreSQL and can hold back
// what clients send, so that the server seems to stop answering.
type stallProxy struct {
	t       testing.TB
	ln      net.Listener
	target  string
	stalled atomic.Bool
	wg      sync.WaitGroup
	mu      sync.Mutex
	conns   []net.Conn
}

// proxiedPool opens a pool of at most maxConns connections that reach the
// server through a stallProxy.
func proxiedPool(t testing.TB, maxConns int32) (*pgxpool.Pool, *stallProxy) {
	t.Helper()
	cfg := poolConfig(t)
	proxy := newStallProxy(t, fmt.Sprintf("%s:%d", cfg.ConnConfig.Host, cfg.ConnConfig.Port))
	host, port, _ := net.SplitHostPort(proxy.ln.Addr().String())
	cfg.ConnConfig.Host = host
	if _, err := fmt.Sscan(port, &cfg.ConnConfig.Port); err != nil {
		t.Fatal(err)
	}
	cfg.MaxConns = maxConns
	return openPool(t, cfg), proxy
}

func newStallProxy(t testing.TB, target string) *stallProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &stallProxy{t: t, ln: ln, target: target}
	p.wg.Go(p.accept)
	t.Cleanup(func() {
		_ = ln.Close()
		p.mu.Lock()
		for _, c := range p.conns {
			_ = c.Close()
		}
		p.mu.Unlock()
		p.wg.Wait()
	})
	return p
}

func (p *stallProxy) accept() {
	for {
		client, err := p.ln.Accept()
		if err != nil {
			return
		}
		server, err := net.Dial("tcp", p.target)
		if err != nil {
			_ = client.Close()
			continue
		}
		p.mu.Lock()
		p.conns = append(p.conns, client, server)
		p.mu.Unlock()
		p.wg.Go(func() { // server to client, never held back
			buf := make([]byte, 32<<10)
			for {
				n, err := server.Read(buf)
				if n > 0 {
					if _, werr := client.Write(buf[:n]); werr != nil {
						break
					}
				}
				if err != nil {
					break
				}
			}
			_ = client.Close()
		})
		p.wg.Go(func() { // client to server, held back while stalled
			buf := make([]byte, 32<<10)
			for {
				n, err := client.Read(buf)
				for n > 0 && p.stalled.Load() {
					time.Sleep(time.Millisecond)
				}
				if n > 0 {
					if _, werr := server.Write(buf[:n]); werr != nil {
						break
					}
				}
				if err != nil {
					break
				}
			}
			_ = server.Close() // the server ends the session
		})
	}
}

// TestMuxStatementTimeout: when the server stops answering a shared
// connection, a try or an unlock on it gives up after
// Options.ReleaseTimeout, the connection is destroyed, and every lease on
// it reports the loss (the lease whose unlock timed out reports a failed
// release instead: its lock goes with the session). The sessions end
// and nothing stays held.
func TestMuxStatementTimeout(t *testing.T) {
	pool, proxy := proxiedPool(t, 4)
	const timeout = 300 * time.Millisecond
	b := New(pool, Options{SharedConns: 1, ReleaseTimeout: timeout})
	obs := newObserver(t)
	ctx, cancel := guardCtx()
	defer cancel()
	var keys []store.Key
	key := func(what string) store.Key {
		k := newKey(t, what)
		keys = append(keys, k)
		return k
	}

	// A try that gets no answer.
	l1, l2 := mustAcquire(t, b, key("1"), excl(0)), mustAcquire(t, b, key("2"), shared(0))
	pid := l1.PID()
	proxy.stalled.Store(true)
	_, err := b.Acquire(ctx, key("3"), excl(0))
	proxy.stalled.Store(false)
	if err == nil || errors.Is(err, store.ErrNotAcquired) {
		t.Fatalf("try without an answer = %v, want a driver error", err)
	}
	t.Logf("try without an answer: %v", err)
	for i, l := range []heldLease{l1, l2} {
		if err := l.Check(ctx); !errors.Is(err, store.ErrLockLost) {
			t.Errorf("lease %d: Check = %v, want ErrLockLost", i+1, err)
		}
		if err := l.Release(ctx); !errors.Is(err, store.ErrLockLost) {
			t.Errorf("lease %d: Release = %v, want ErrLockLost", i+1, err)
		}
	}
	obs.sessionGone(pid)

	// An unlock that gets no answer.
	l4, l5 := mustAcquire(t, b, key("4"), excl(0)), mustAcquire(t, b, key("5"), excl(0))
	pid = l4.PID()
	proxy.stalled.Store(true)
	err = l4.Release(ctx)
	proxy.stalled.Store(false)
	if err == nil || errors.Is(err, store.ErrLockLost) {
		t.Fatalf("unlock without an answer = %v, want a failed release", err)
	}
	t.Logf("unlock without an answer: %v", err)
	if err := l5.Check(ctx); !errors.Is(err, store.ErrLockLost) {
		t.Errorf("other lease: Check = %v, want ErrLockLost", err)
	}
	if err := l5.Release(ctx); !errors.Is(err, store.ErrLockLost) {
		t.Errorf("other lease: Release = %v, want ErrLockLost", err)
	}
	obs.sessionGone(pid)
	for _, k := range keys {
		if rows := obs.rows(k); len(rows) != 0 {
			t.Errorf("pg_locks rows left for %q: %v", k.String, rows)
		}
	}
	if m := b.mux.size(); m != 0 {
		t.Fatalf("%d shared connections left", m)
	}
	poolHoldsNone(t, pool)
}

// TestMuxTryServerError: a try that fails with a server error (here its
// prepared statement was dropped behind pgx's back) leaves the shared
// connection and the other leases on it alone: the session is asked
// whether it got the lock, and it did not.
func TestMuxTryServerError(t *testing.T) {
	pool := newPool(t, 2)
	b := New(pool, Options{SharedConns: 1})
	obs := newObserver(t)
	ctx, cancel := guardCtx()
	defer cancel()
	k1, k2 := newKey(t, "1"), newKey(t, "2")
	l1 := mustAcquire(t, b, k1, excl(0)) // prepares the try on the shared connection
	pid := l1.PID()
	c := l1.(*muxLease).c
	if err := c.enter(ctx); err != nil {
		t.Fatal(err)
	}
	c.busy()
	_, err := c.pc.Exec(ctx, "DEALLOCATE ALL")
	c.leave()
	if err != nil {
		t.Fatal(err)
	}
	_, err = b.Acquire(ctx, k2, excl(0))
	if err == nil || errors.Is(err, store.ErrNotAcquired) || errors.Is(err, store.ErrLockLost) {
		t.Fatalf("try whose statement is gone = %v, want the server's error", err)
	}
	t.Logf("try whose statement is gone: %v", err)
	if rows := obs.rows(k2); len(rows) != 0 {
		t.Fatalf("pg_locks rows for the failed try: %v", rows)
	}
	if err := l1.Check(ctx); err != nil {
		t.Fatalf("Check of the other lease: %v", err)
	}
	if h := obs.holders(k1); !slices.Equal(h, []uint32{pid}) {
		t.Fatalf("holders of k1 %v, want %d", h, pid)
	}
	// pgx prepares the statement anew; the connection serves on.
	l2 := mustAcquire(t, b, k2, excl(0))
	if l2.PID() != pid {
		t.Errorf("second try on session %d, want the shared connection %d", l2.PID(), pid)
	}
	mustRelease(t, l2)
	mustRelease(t, l1)
	poolHoldsNone(t, pool)
}

// TestMuxRelock: a Relock on a shared connection keeps the key's place on
// that connection for the new lease and leaves the connection's other
// locks alone; when the unlock finds the lock gone behind its back, the
// connection is destroyed and every lease on it is lost, the new one
// never handed out.
func TestMuxRelock(t *testing.T) {
	p := newSharedPair(t, excl(0))
	pool, b, obs, k1, k2, l1, l2, pid := p.pool, p.b, p.obs, p.k1, p.k2, p.l1, p.l2, p.pid
	ctx, cancel := guardCtx()
	defer cancel()
	if l2.PID() != pid {
		t.Fatalf("the two leases are on sessions %d and %d; want one shared connection", pid, l2.PID())
	}
	next, err := l1.(store.Relocker).Relock(ctx)
	if err != nil || next == nil {
		t.Fatalf("Relock = %v, %v; want a new lease", next, err)
	}
	n1 := next.(heldLease)
	for _, k := range []store.Key{k1, k2} {
		if got := obs.holders(k); !slices.Equal(got, []uint32{pid}) {
			t.Fatalf("holders of %s after Relock = %v, want [%d]", k.String, got, pid)
		}
	}
	if n1.PID() != pid || b.mux.size() != 1 {
		t.Fatalf("new lease on session %d, %d shared connections; want %d, 1", n1.PID(), b.mux.size(), pid)
	}
	// Another client cannot have either key.
	other := New(newPool(t, 2), Options{})
	for _, k := range []store.Key{k1, k2} {
		l, err := other.Acquire(ctx, k, excl(0))
		if !errors.Is(err, store.ErrNotAcquired) {
			if l != nil {
				_ = l.Release(ctx)
			}
			t.Fatalf("try of %s by another client = %v, want ErrNotAcquired", k.String, err)
		}
	}

	// The session loses its locks behind the leases' back: the next
	// Relock finds out, and nothing on the connection is trusted any more.
	unlockAllBehindBack(t, ctx, n1.(*muxLease).c)
	if l, err := n1.(store.Relocker).Relock(ctx); l != nil || !errors.Is(err, store.ErrLockLost) {
		t.Fatalf("Relock of a lock the session lost = %v, %v; want nil, ErrLockLost", l, err)
	}
	expectLost(t, ctx, "the other lease", l2)
	obs.sessionGone(pid)
	poolHoldsNone(t, pool)
}
