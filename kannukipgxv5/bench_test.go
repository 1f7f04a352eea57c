package kannukipgxv5

import (
	"context"
	"github.com/kannuki-go/kannuki/internal/due/duetest"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/kannuki-go/kannuki/keys"
	"github.com/kannuki-go/kannuki/store"

	"github.com/jackc/pgx/v5"
	"github.com/kannuki-go/kannuki"
	"github.com/kannuki-go/kannuki/internal/pgsql"
)

// The benchmarks measure one uncontended lock+unlock cycle per iteration
// against the raw floor: the fastest form of the two statements on one
// pinned connection, one round trip each (pgx with its statement cache).
//
//	go test -run '^$' -bench . -count 5 -benchmem
//
// Compare the medians of BenchmarkFloor and BenchmarkBackend (and
// BenchmarkWithLock) of the same run, or use the paired benchmarks, which
// interleave their candidates and report ratios: BenchmarkPaired (floor,
// backend, WithLock), BenchmarkPairedMux (the same with multiplexing on
// and off) and BenchmarkParallelMux (throughput of 16 goroutines with
// multiplexing on and off):
//
//	go test -run '^$' -bench 'Paired|ParallelMux' -count 5 .

// BenchmarkFloor is the raw floor: pg_advisory_lock / pg_advisory_unlock
// with a bound parameter on one pinned connection, through pgx's statement
// cache.
func BenchmarkFloor(b *testing.B) {
	pool := newPool(b, 4)
	ctx := context.Background()
	pc, err := pool.Acquire(ctx)
	if err != nil {
		b.Fatal(err)
	}
	defer pc.Release()
	c := pc.Conn()
	k := newKey(b, "floor")
	b.ResetTimer()
	for b.Loop() {
		if _, err := c.Exec(ctx, "SELECT pg_advisory_lock($1)", k.ID); err != nil {
			b.Fatal(err)
		}
		var ok bool
		if err := c.QueryRow(ctx, "SELECT pg_advisory_unlock($1)", k.ID).Scan(&ok); err != nil || !ok {
			b.Fatal(ok, err)
		}
	}
}

// BenchmarkFloorSimpleLiteral is the alternative Kannuki uses for waiting
// statements: the id as a literal, the key in a comment, the simple
// protocol (no statement cache involved).
func BenchmarkFloorSimpleLiteral(b *testing.B) {
	pool := newPool(b, 4)
	ctx := context.Background()
	pc, err := pool.Acquire(ctx)
	if err != nil {
		b.Fatal(err)
	}
	defer pc.Release()
	c := pc.Conn()
	k := newKey(b, "simple")
	lock, unlock := pgsql.Lock(k, store.ModeExclusive, store.WaitForever), pgsql.Unlock(k, store.ModeExclusive)
	b.ResetTimer()
	for b.Loop() {
		if _, err := c.Exec(ctx, lock); err != nil {
			b.Fatal(err)
		}
		var ok bool
		if err := c.QueryRow(ctx, unlock, pgx.QueryExecModeSimpleProtocol).Scan(&ok); err != nil || !ok {
			b.Fatal(ok, err)
		}
	}
}

// BenchmarkFloorCommentPerKey shows the trap: a statement carrying the key
// in a comment, sent through the statement cache, with a new key every
// cycle: every new text is a cache miss and costs a prepare.
func BenchmarkFloorCommentPerKey(b *testing.B) {
	pool := newPool(b, 4)
	ctx := context.Background()
	pc, err := pool.Acquire(ctx)
	if err != nil {
		b.Fatal(err)
	}
	defer pc.Release()
	c := pc.Conn()
	base := newKey(b, "percomment").String
	i := 0
	b.ResetTimer()
	for b.Loop() {
		i++
		k, _ := keys.Ruby{}.Derive("", base+strconv.Itoa(i))
		if _, err := c.Exec(ctx, "SELECT pg_advisory_lock($1) "+pgsql.Comment(k.String), k.ID); err != nil {
			b.Fatal(err)
		}
		var ok bool
		if err := c.QueryRow(ctx, "SELECT pg_advisory_unlock($1) "+pgsql.Comment(k.String), k.ID).Scan(&ok); err != nil || !ok {
			b.Fatal(ok, err)
		}
	}
}

// BenchmarkBackend is one uncontended Acquire+Release through the backend
// (pool acquire, cached try, cached unlock, pool release).
func BenchmarkBackend(b *testing.B) {
	benchBackend(b, context.Background(), false)
}

// BenchmarkBackendCancelableCtx is BenchmarkBackend with a cancelable
// context, which adds the cancellation guard around each statement.
func BenchmarkBackendCancelableCtx(b *testing.B) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	benchBackend(b, ctx, false)
}

// BenchmarkBackendNewKeys uses a new key every cycle: constant statement
// texts keep the statement cache hit.
func BenchmarkBackendNewKeys(b *testing.B) {
	benchBackend(b, context.Background(), true)
}

func benchBackend(b *testing.B, ctx context.Context, newKeys bool) {
	pool := newPool(b, 4)
	be := New(pool, Options{})
	k := newKey(b, "backend")
	base := k.String
	i := 0
	b.ResetTimer()
	for b.Loop() {
		if newKeys {
			i++
			k, _ = keys.Ruby{}.Derive("", base+strconv.Itoa(i))
		}
		l, err := be.Acquire(ctx, k, store.Request{Wait: store.WaitForever})
		if err != nil {
			b.Fatal(err)
		}
		if err := l.Release(ctx); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkWithLock is an uncontended Locker.WithLock with an empty fn on
// this backend (default options: Blocking, wait forever, keepalive on).
func BenchmarkWithLock(b *testing.B) {
	pool := newPool(b, 4)
	l := kannuki.New(New(pool, Options{}), kannuki.Options{})
	ctx := context.Background()
	key := newKey(b, "withlock").String
	fn := func(context.Context) error { return nil }
	b.ResetTimer()
	for b.Loop() {
		if err := l.WithLock(ctx, key, fn); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkPaired alternates one floor cycle, one backend cycle and one
// WithLock cycle, rotating their order, so that a machine shared with other
// work slows all three alike. All three run on the same single connection
// (a pool of one): two server processes can be scheduled very differently
// on a small machine, which would skew a comparison across connections.
// The floor's cycle is timed without taking the connection from the pool.
// It reports the median time of a cycle of each (medians shrug off the
// pauses other processes cause) and the ratios of throughput: floor time /
// our time, 1.0 meaning as fast as the floor.
func BenchmarkPaired(b *testing.B) {
	pool := newPool(b, 1)
	ctx := context.Background()
	be := New(pool, Options{})
	l := kannuki.New(be, kannuki.Options{})
	kf, kb, kw := newKey(b, "floor"), newKey(b, "backend"), newKey(b, "withlock")
	fn := func(context.Context) error { return nil }
	cycles := [3]func() time.Duration{
		func() time.Duration {
			pc, err := pool.Acquire(ctx)
			if err != nil {
				b.Fatal(err)
			}
			defer pc.Release()
			c := pc.Conn()
			t0 := time.Now()
			if _, err := c.Exec(ctx, "SELECT pg_advisory_lock($1)", kf.ID); err != nil {
				b.Fatal(err)
			}
			var ok bool
			if err := c.QueryRow(ctx, "SELECT pg_advisory_unlock($1)", kf.ID).Scan(&ok); err != nil || !ok {
				b.Fatal(ok, err)
			}
			return time.Since(t0)
		},
		func() time.Duration {
			t0 := time.Now()
			ls, err := be.Acquire(ctx, kb, store.Request{Wait: store.WaitForever})
			if err != nil {
				b.Fatal(err)
			}
			if err := ls.Release(ctx); err != nil {
				b.Fatal(err)
			}
			return time.Since(t0)
		},
		func() time.Duration {
			t0 := time.Now()
			if err := l.WithLock(ctx, kw.String, fn); err != nil {
				b.Fatal(err)
			}
			return time.Since(t0)
		},
	}
	var spent [3][]time.Duration
	n := 0
	b.ResetTimer()
	for b.Loop() {
		for j := range 3 {
			i := (n + j) % 3
			spent[i] = append(spent[i], cycles[i]())
		}
		n++
	}
	var med [3]float64
	for i := range spent {
		slices.Sort(spent[i])
		med[i] = float64(spent[i][len(spent[i])/2].Nanoseconds())
	}
	b.ReportMetric(med[0], "floor-ns/cycle")
	b.ReportMetric(med[1], "backend-ns/cycle")
	b.ReportMetric(med[2], "withlock-ns/cycle")
	b.ReportMetric(med[0]/med[1], "backend/floor")
	b.ReportMetric(med[0]/med[2], "withlock/floor")
}

// BenchmarkPairedMux is BenchmarkPaired with multiplexing on and off side
// by side: one floor cycle, then Acquire+Release and WithLock cycles on a
// Backend with multiplexing off (dedicated) and on (mux, the default),
// rotating their order, all on the same single connection (a pool of
// one: both Backends give it back after each cycle). It reports the
// median time of a cycle of each and the ratios of throughput to the
// floor (floor time / our time), and mux against dedicated.
func BenchmarkPairedMux(b *testing.B) {
	pool := newPool(b, 1)
	ctx := context.Background()
	ded, mux := New(pool, dedicatedOpts), New(pool, Options{})
	if ded.mux != nil || mux.mux == nil {
		b.Fatal("multiplexing not set as the benchmark expects")
	}
	lded, lmux := kannuki.New(ded, kannuki.Options{}), kannuki.New(mux, kannuki.Options{})
	kf := newKey(b, "floor")
	kd, km := newKey(b, "dedicated"), newKey(b, "mux")
	kwd, kwm := newKey(b, "withlock-dedicated"), newKey(b, "withlock-mux")
	fn := func(context.Context) error { return nil }
	backendCycle := func(be *Backend, k store.Key) func() time.Duration {
		return func() time.Duration {
			t0 := time.Now()
			ls, err := be.Acquire(ctx, k, store.Request{Wait: store.WaitForever})
			if err != nil {
				b.Fatal(err)
			}
			if err := ls.Release(ctx); err != nil {
				b.Fatal(err)
			}
			return time.Since(t0)
		}
	}
	withLockCycle := func(l *kannuki.Locker, k store.Key) func() time.Duration {
		return func() time.Duration {
			t0 := time.Now()
			if err := l.WithLock(ctx, k.String, fn); err != nil {
				b.Fatal(err)
			}
			return time.Since(t0)
		}
	}
	const (
		floor = iota
		backendDed
		backendMux
		withLockDed
		withLockMux
		cases
	)
	cycles := [cases]func() time.Duration{
		floor: func() time.Duration {
			pc, err := pool.Acquire(ctx)
			if err != nil {
				b.Fatal(err)
			}
			defer pc.Release()
			c := pc.Conn()
			t0 := time.Now()
			if _, err := c.Exec(ctx, "SELECT pg_advisory_lock($1)", kf.ID); err != nil {
				b.Fatal(err)
			}
			var ok bool
			if err := c.QueryRow(ctx, "SELECT pg_advisory_unlock($1)", kf.ID).Scan(&ok); err != nil || !ok {
				b.Fatal(ok, err)
			}
			return time.Since(t0)
		},
		backendDed:  backendCycle(ded, kd),
		backendMux:  backendCycle(mux, km),
		withLockDed: withLockCycle(lded, kwd),
		withLockMux: withLockCycle(lmux, kwm),
	}
	var spent [cases][]time.Duration
	n := 0
	b.ResetTimer()
	for b.Loop() {
		for j := range cases {
			i := (n + j) % cases
			spent[i] = append(spent[i], cycles[i]())
		}
		n++
	}
	var med [cases]float64
	for i := range spent {
		slices.Sort(spent[i])
		med[i] = float64(spent[i][len(spent[i])/2].Nanoseconds())
	}
	b.ReportMetric(med[floor], "floor-ns/cycle")
	b.ReportMetric(med[backendDed], "dedicated-ns/cycle")
	b.ReportMetric(med[backendMux], "mux-ns/cycle")
	b.ReportMetric(med[floor]/med[backendDed], "dedicated/floor")
	b.ReportMetric(med[floor]/med[backendMux], "mux/floor")
	b.ReportMetric(med[backendDed]/med[backendMux], "mux/dedicated")
	b.ReportMetric(med[floor]/med[withLockDed], "withlock-dedicated/floor")
	b.ReportMetric(med[floor]/med[withLockMux], "withlock-mux/floor")
}

// BenchmarkParallelMux measures throughput under concurrency: 16
// goroutines, each taking and giving back a key of its own, on a pool of
// 16 connections, in rounds of 50 cycles per goroutine that alternate
// between a Backend with multiplexing off (each lock on a connection of
// its own, 16 in parallel) and on (the locks share at most 8 connections,
// the default bound, one statement at a time on each). It reports the median cycles per
// second of a round of each and their ratio.
func BenchmarkParallelMux(b *testing.B) {
	const goroutines, perRound = 16, 50
	pool := newPool(b, goroutines)
	ctx := context.Background()
	backends := [2]*Backend{New(pool, dedicatedOpts), New(pool, Options{})}
	keys := make([]store.Key, goroutines)
	for i := range keys {
		keys[i] = newKey(b, strconv.Itoa(i))
	}
	round := func(be *Backend) float64 {
		var wg sync.WaitGroup
		t0 := time.Now()
		for g := range goroutines {
			wg.Go(func() {
				for range perRound {
					l, err := be.Acquire(ctx, keys[g], store.Request{Wait: store.WaitForever})
					if err != nil {
						b.Error(err)
						return
					}
					if err := l.Release(ctx); err != nil {
						b.Error(err)
						return
					}
				}
			})
		}
		wg.Wait()
		return goroutines * perRound / time.Since(t0).Seconds()
	}
	var rates [2][]float64
	n := 0
	b.ResetTimer()
	for b.Loop() {
		for j := range 2 {
			i := (n + j) % 2
			rates[i] = append(rates[i], round(backends[i]))
		}
		n++
	}
	var med [2]float64
	for i := range rates {
		slices.Sort(rates[i])
		med[i] = rates[i][len(rates[i])/2]
	}
	b.ReportMetric(med[0], "dedicated-cycles/s")
	b.ReportMetric(med[1], "mux-cycles/s")
	b.ReportMetric(med[1]/med[0], "mux/dedicated")
}

// BenchmarkPairedWatch measures what the socket watch costs an
// uncontended cycle: Acquire+Release on four Backends on the same single
// connection (a pool of one), with multiplexing off and on, each with the
// watch and with NoWatch, rotating their order. It reports the median
// time of a cycle of each and the ratios watch/nowatch (NoWatch time /
// watch time: 1 costs nothing, 0.98 is 2% slower).
func BenchmarkPairedWatch(b *testing.B) {
	pool := newPool(b, 1)
	nowatch := func(o Options) Options { o.NoWatch = true; return o }
	backends := []*Backend{
		New(pool, dedicatedOpts), New(pool, nowatch(dedicatedOpts)),
		New(pool, Options{}), New(pool, nowatch(Options{})),
	}
	med := duetest.PairedCycles(b, stores(backends), keysFor(b, len(backends)))
	b.ReportMetric(med[0], "dedicated-watch-ns/cycle")
	b.ReportMetric(med[1], "dedicated-nowatch-ns/cycle")
	b.ReportMetric(med[2], "mux-watch-ns/cycle")
	b.ReportMetric(med[3], "mux-nowatch-ns/cycle")
	b.ReportMetric(med[1]/med[0], "dedicated-watch/nowatch")
	b.ReportMetric(med[3]/med[2], "mux-watch/nowatch")
}

// BenchmarkPairedTimers measures what the watchdogs' shared timer saves an
// uncontended cycle: Acquire+Release on Backends sharing one connection,
// multiplexing off and on, each with the due.Queue watchdogs as shipped
// and with a runtime timer per statement and per pool request
// (due.Queue.TimerPerNode, what a context with a timeout or a socket
// deadline per statement costs), rotating their order. It reports the
// median cycle of each and the ratios queue/timer (timer time / queue
// time: above 1 the queue pays).
func BenchmarkPairedTimers(b *testing.B) {
	pool := newPool(b, 1)
	perNode := func(be *Backend) *Backend {
		duetest.TimerPerNode(be, "stmtDog", "connDog")
		return be
	}
	backends := []*Backend{
		New(pool, dedicatedOpts), perNode(New(pool, dedicatedOpts)),
		New(pool, Options{}), perNode(New(pool, Options{})),
	}
	med := duetest.PairedCycles(b, stores(backends), keysFor(b, len(backends)))
	b.ReportMetric(med[0], "dedicated-queue-ns/cycle")
	b.ReportMetric(med[1], "dedicated-timer-ns/cycle")
	b.ReportMetric(med[2], "mux-queue-ns/cycle")
	b.ReportMetric(med[3], "mux-timer-ns/cycle")
	b.ReportMetric(med[1]/med[0], "dedicated-queue/timer")
	b.ReportMetric(med[3]/med[2], "mux-queue/timer")
}

func stores(bs []*Backend) []store.Backend {
	out := make([]store.Backend, len(bs))
	for i, be := range bs {
		out[i] = be
	}
	return out
}

func keysFor(b *testing.B, n int) []store.Key {
	keys := make([]store.Key, n)
	for i := range keys {
		keys[i] = newKey(b, strconv.Itoa(i))
	}
	return keys
}
