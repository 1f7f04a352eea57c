package mysql

import (
	"context"
	"database/sql"
	"github.com/kannuki-go/kannuki/internal/due/duetest"
	"slices"
	"testing"
	"time"

	"github.com/kannuki-go/kannuki/store"

	"github.com/kannuki-go/kannuki"
	"github.com/kannuki-go/kannuki/kannukimysql"
)

// BenchmarkLockUnlock measures uncontended lock+unlock cycles on one key,
// through the backend and through Locker.WithLock (empty fn), against the
// raw floor measured in the same run: one pinned connection running
// GET_LOCK(?, 0) and RELEASE_LOCK(?) with interpolateParams=true (one round
// trip each, text protocol), with statements prepared once (one round trip
// each, binary protocol), and, for reference, with arguments on the
// default DSN (prepare + execute: two round trips each).
//
//	go test -run '^$' -bench LockUnlock -count 5 ./mysql
//
// Each result also reports cycles/s.
func BenchmarkLockUnlock(b *testing.B) {
	for _, v := range variants {
		b.Run(v.name, func(b *testing.B) {
			b.Run("backend", func(b *testing.B) {
				for _, prep := range []bool{true, false} {
					name := "prepared"
					if !prep {
						name = "text"
					}
					b.Run(name, func(b *testing.B) {
						be, _ := newBackend(b, v, 4, kannukimysql.Options{DisablePrepared: !prep})
						benchBackend(b, be)
					})
				}
			})
			b.Run("locker", func(b *testing.B) {
				be, _ := newBackend(b, v, 4, kannukimysql.Options{})
				benchLocker(b, be)
			})
			b.Run("floor-prepared", func(b *testing.B) {
				benchFloorPrepared(b, openDB(b, v.dsn(), 4))
			})
			b.Run("floor-args", func(b *testing.B) {
				// interpolateParams=true: the fastest text floor; default
				// DSN: prepare + execute per statement.
				benchFloorArgs(b, openDB(b, v.dsn(), 4))
			})
		})
	}
}

func benchBackend(b *testing.B, be store.Backend) {
	ctx := context.Background()
	k := uniqueKey(b)
	mustRelease(b, mustAcquire(b, be, k)) // warm: the connection's session and statements
	b.ResetTimer()
	for b.Loop() {
		l, err := be.Acquire(ctx, k, exclusive(store.WaitForever))
		if err != nil {
			b.Fatal(err)
		}
		if err := l.Release(ctx); err != nil {
			b.Fatal(err)
		}
	}
	reportCycles(b)
}

func benchLocker(b *testing.B, be store.Backend) {
	ctx := context.Background()
	l := kannuki.New(be, kannuki.Options{})
	key := uniqueKey(b).String
	fn := func(context.Context) error { return nil }
	if err := l.WithLock(ctx, key, fn); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for b.Loop() {
		if err := l.WithLock(ctx, key, fn); err != nil {
			b.Fatal(err)
		}
	}
	reportCycles(b)
}

func benchFloorPrepared(b *testing.B, db *sql.DB) {
	ctx := context.Background()
	conn, err := db.Conn(ctx)
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	lock, err := conn.PrepareContext(ctx, "SELECT GET_LOCK(?, 0)")
	if err != nil {
		b.Fatal(err)
	}
	defer lock.Close()
	unlock, err := conn.PrepareContext(ctx, "SELECT RELEASE_LOCK(?)")
	if err != nil {
		b.Fatal(err)
	}
	defer unlock.Close()
	name := uniqueKey(b).Name
	var ok int
	b.ResetTimer()
	for b.Loop() {
		if err := lock.QueryRowContext(ctx, name).Scan(&ok); err != nil || ok != 1 {
			b.Fatal(ok, err)
		}
		if err := unlock.QueryRowContext(ctx, name).Scan(&ok); err != nil || ok != 1 {
			b.Fatal(ok, err)
		}
	}
	reportCycles(b)
}

func benchFloorArgs(b *testing.B, db *sql.DB) {
	ctx := context.Background()
	conn, err := db.Conn(ctx)
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	name := uniqueKey(b).Name
	var ok int
	b.ResetTimer()
	for b.Loop() {
		if err := conn.QueryRowContext(ctx, "SELECT GET_LOCK(?, 0)", name).Scan(&ok); err != nil || ok != 1 {
			b.Fatal(ok, err)
		}
		if err := conn.QueryRowContext(ctx, "SELECT RELEASE_LOCK(?)", name).Scan(&ok); err != nil || ok != 1 {
			b.Fatal(ok, err)
		}
	}
	reportCycles(b)
}

// reportCycles adds lock+unlock cycles per second to the result.
func reportCycles(b *testing.B) {
	if e := b.Elapsed(); e > 0 {
		b.ReportMetric(float64(b.N)/e.Seconds(), "cycles/s")
	}
}

// BenchmarkInterleaved runs the candidates of BenchmarkLockUnlock in
// alternating blocks of 50 cycles, one round per iteration, and reports
// each one's median cycles/s over the rounds and its median ratio to the
// fastest floor of the same round (the larger of floor-prepared on the
// default DSN and floor-args with interpolateParams=true). Run after run,
// the load of a shared machine drifts far more than the differences
// measured; pairing blocks within a round cancels most of that drift.
//
//	go test -run '^$' -bench Interleaved -benchtime 30x -count 5 ./mysql
func BenchmarkInterleaved(b *testing.B) {
	ctx := context.Background()
	type candidate struct {
		name  string
		cycle func()
		rates []float64
	}
	pinned := func(dsn string) *sql.Conn {
		conn, err := openDB(b, dsn, 4).Conn(ctx)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { conn.Close() })
		return conn
	}
	prepared := func(conn *sql.Conn) func() {
		lock, err := conn.PrepareContext(ctx, "SELECT GET_LOCK(?, 0)")
		if err != nil {
			b.Fatal(err)
		}
		unlock, err := conn.PrepareContext(ctx, "SELECT RELEASE_LOCK(?)")
		if err != nil {
			b.Fatal(err)
		}
		name := uniqueKey(b).Name
		return func() {
			var ok int
			if err := lock.QueryRowContext(ctx, name).Scan(&ok); err != nil || ok != 1 {
				b.Fatal(ok, err)
			}
			if err := unlock.QueryRowContext(ctx, name).Scan(&ok); err != nil || ok != 1 {
				b.Fatal(ok, err)
			}
		}
	}
	args := func(conn *sql.Conn) func() {
		name := uniqueKey(b).Name
		return func() {
			var ok int
			if err := conn.QueryRowContext(ctx, "SELECT GET_LOCK(?, 0)", name).Scan(&ok); err != nil || ok != 1 {
				b.Fatal(ok, err)
			}
			if err := conn.QueryRowContext(ctx, "SELECT RELEASE_LOCK(?)", name).Scan(&ok); err != nil || ok != 1 {
				b.Fatal(ok, err)
			}
		}
	}
	backend := func(v variant, opts kannukimysql.Options) func() {
		be, _ := newBackend(b, v, 4, opts)
		k := uniqueKey(b)
		return func() {
			l, err := be.Acquire(ctx, k, exclusive(store.WaitForever))
			if err != nil {
				b.Fatal(err)
			}
			if err := l.Release(ctx); err != nil {
				b.Fatal(err)
			}
		}
	}
	locker := func(v variant, opts kannuki.Options) func() {
		be, _ := newBackend(b, v, 4, kannukimysql.Options{})
		l := kannuki.New(be, opts)
		key := uniqueKey(b).String
		fn := func(context.Context) error { return nil }
		return func() {
			if err := l.WithLock(ctx, key, fn); err != nil {
				b.Fatal(err)
			}
		}
	}
	def, interp := variants[0], variants[1]
	cands := []*candidate{
		{name: "floor-prepared", cycle: prepared(pinned(def.dsn()))},
		{name: "floor-interpolate", cycle: args(pinned(interp.dsn()))},
		{name: "floor-args-default", cycle: args(pinned(def.dsn()))},
		{name: "backend-default", cycle: backend(def, kannukimysql.Options{})},
		{name: "backend-interpolate", cycle: backend(interp, kannukimysql.Options{})},
		{name: "backend-text", cycle: backend(def, kannukimysql.Options{DisablePrepared: true})},
		{name: "locker-default", cycle: locker(def, kannuki.Options{})},
		{name: "locker-interpolate", cycle: locker(interp, kannuki.Options{})},
		// Diagnostic: the Locker without its per-lock keepalive goroutine.
		{name: "locker-nokeepalive", cycle: locker(def, kannuki.Options{KeepaliveInterval: -1})},
	}
	const block = 50
	for _, c := range cands {
		c.cycle() // warm: sessions, statements
	}
	b.ResetTimer()
	for b.Loop() {
		for _, c := range cands {
			start := time.Now()
			for range block {
				c.cycle()
			}
			c.rates = append(c.rates, block/time.Since(start).Seconds())
		}
	}
	b.StopTimer()
	for _, c := range cands {
		ratios := make([]float64, len(c.rates))
		for i, r := range c.rates {
			ratios[i] = r / max(cands[0].rates[i], cands[1].rates[i])
		}
		b.ReportMetric(median(c.rates), c.name+"-cycles/s")
		b.ReportMetric(median(ratios), c.name+"-ratio")
	}
}

// median of xs (which it sorts).
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	slices.Sort(xs)
	return xs[len(xs)/2]
}

// BenchmarkPairedTimers measures what kannukimysql's watchdogs (due.Queue
// fields dogs and connDog: one timer for all statements) save an
// uncontended cycle against a runtime timer per statement and per pool
// request (due.Queue.TimerPerNode): two Backends on one pool of one
// connection, alternating cycles. It reports the median cycle of each and
// the ratio timer/queue (above 1 the queue pays).
func BenchmarkPairedTimers(b *testing.B) {
	v := variants[0]
	queue, db := newBackend(b, v, 1, kannukimysql.Options{})
	timer := kannukimysql.New(db, kannukimysql.Options{})
	duetest.TimerPerNode(timer, "dogs", "connDog")
	med := duetest.PairedCycles(b, []store.Backend{queue, timer}, []store.Key{uniqueKey(b), uniqueKey(b)})
	b.ReportMetric(med[0], "queue-ns/cycle")
	b.ReportMetric(med[1], "timer-ns/cycle")
	b.ReportMetric(med[1]/med[0], "timer/queue")
}
