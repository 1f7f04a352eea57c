package pgsql

import (
	"context"
	"database/sql"
	"github.com/kannuki-go/kannuki/internal/due/duetest"
	"testing"
	"time"

	"github.com/kannuki-go/kannuki/store"

	"github.com/kannuki-go/kannuki"
	"github.com/kannuki-go/kannuki/kannukipg"
)

// Uncontended lock+release cycles on one key, through the Backend, through
// the Locker, and the raw floor: the same two statements prepared once on
// one pinned connection (pgx/stdlib and lib/pq both run a prepared
// statement in one round trip). Compare cycles/s in one run:
//
//	go test -run '^$' -bench . -benchtime 3000x -count 5 ./pgsql
//
// On a shared machine the load drifts between benchmarks; TestCompareForms
// interleaves the variants cycle by cycle for steadier ratios.

func benchBackend(b *testing.B, d driver) (*kannukipg.Backend, store.Key) {
	db := openDB(b, d, 4)
	warm(b, db, 2)
	return kannukipg.New(db, kannukipg.Options{}), uniqueKey(b)
}

func cyclesPerSecond(b *testing.B) {
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "cycles/s")
}

// BenchmarkFloor is the raw floor: pg_try_advisory_lock($1) and
// pg_advisory_unlock($1), each prepared once on one pinned connection, read
// as a row (query) or, faster, from the rows-affected count of the
// "SELECT 1 WHERE ..." form (exec), as kannukipg does.
func BenchmarkFloor(b *testing.B) {
	for _, d := range drivers {
		b.Run(d.name, func(b *testing.B) {
			db := openDB(b, d, 2)
			ctx := context.Background()
			conn, err := db.Conn(ctx)
			if err != nil {
				b.Fatal(err)
			}
			defer conn.Close()
			prepare := func(q string) *sql.Stmt {
				st, err := conn.PrepareContext(ctx, q)
				if err != nil {
					b.Fatal(err)
				}
				b.Cleanup(func() { st.Close() })
				return st
			}
			id := uniqueKey(b).ID
			b.Run("query", func(b *testing.B) {
				lock, unlock := prepare("SELECT pg_try_advisory_lock($1)"), prepare("SELECT pg_advisory_unlock($1)")
				var ok bool
				for b.Loop() {
					if err := lock.QueryRowContext(ctx, id).Scan(&ok); err != nil || !ok {
						b.Fatalf("lock: %v %v", ok, err)
					}
					if err := unlock.QueryRowContext(ctx, id).Scan(&ok); err != nil || !ok {
						b.Fatalf("unlock: %v %v", ok, err)
					}
				}
				cyclesPerSecond(b)
			})
			b.Run("exec", func(b *testing.B) {
				lock, unlock := prepare("SELECT 1 WHERE pg_try_advisory_lock($1)"), prepare("SELECT 1 WHERE pg_advisory_unlock($1)")
				for b.Loop() {
					if r, err := lock.ExecContext(ctx, id); err != nil {
						b.Fatalf("lock: %v", err)
					} else if n, _ := r.RowsAffected(); n != 1 {
						b.Fatal("lock not granted")
					}
					if r, err := unlock.ExecContext(ctx, id); err != nil {
						b.Fatalf("unlock: %v", err)
					} else if n, _ := r.RowsAffected(); n != 1 {
						b.Fatal("unlock returned false")
					}
				}
				cyclesPerSecond(b)
			})
		})
	}
}

// BenchmarkBackend is Acquire+Release through kannukipg (FormAuto), with a
// context that has no Done channel and with a cancelable one (which takes
// the pool request off the caller's goroutine).
func BenchmarkBackend(b *testing.B) {
	for _, d := range drivers {
		b.Run(d.name, func(b *testing.B) {
			be, k := benchBackend(b, d)
			for _, c := range []struct {
				name string
				ctx  func() (context.Context, context.CancelFunc)
			}{
				{"background", func() (context.Context, context.CancelFunc) { return context.Background(), func() {} }},
				{"cancelable", func() (context.Context, context.CancelFunc) { return context.WithCancel(context.Background()) }},
			} {
				b.Run(c.name, func(b *testing.B) {
					ctx, cancel := c.ctx()
					defer cancel()
					for b.Loop() {
						l, err := be.Acquire(ctx, k, store.Request{Wait: store.WaitForever})
						if err != nil {
							b.Fatal(err)
						}
						if err := l.Release(ctx); err != nil {
							b.Fatal(err)
						}
					}
					cyclesPerSecond(b)
				})
			}
		})
	}
}

// BenchmarkWithLock is an uncontended Locker.WithLock with an empty fn on
// kannukipg (default options: 5 s keepalive, which never fires here).
func BenchmarkWithLock(b *testing.B) {
	for _, d := range drivers {
		b.Run(d.name, func(b *testing.B) {
			be, k := benchBackend(b, d)
			l := kannuki.New(be, kannuki.Options{})
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			fn := func(context.Context) error { return nil }
			for b.Loop() {
				if err := l.WithLock(ctx, k.String, fn); err != nil {
					b.Fatal(err)
				}
			}
			cyclesPerSecond(b)
		})
	}
}

// BenchmarkForms compares the statement forms on the Backend, per driver.
func BenchmarkForms(b *testing.B) {
	for _, d := range drivers {
		b.Run(d.name, func(b *testing.B) {
			db := openDB(b, d, 4)
			warm(b, db, 2)
			k := uniqueKey(b)
			for _, f := range []kannukipg.StatementForm{kannukipg.FormLiteral, kannukipg.FormBound, kannukipg.FormPrepared} {
				be := kannukipg.New(db, kannukipg.Options{Form: f})
				b.Run(f.String(), func(b *testing.B) {
					ctx := context.Background()
					for b.Loop() {
						l, err := be.Acquire(ctx, k, store.Request{})
						if err != nil {
							b.Fatal(err)
						}
						if err := l.Release(ctx); err != nil {
							b.Fatal(err)
						}
					}
					cyclesPerSecond(b)
				})
			}
		})
	}
}

// BenchmarkVsFloor runs, in every iteration, one raw floor cycle (both
// statements prepared once on a pinned connection, run with Exec) and one
// cycle of the variant, timing each: load that drifts during the run hits
// both alike, so the reported ratio (variant cycles/s over floor cycles/s)
// is steadier than comparing separate benchmarks on a shared machine.
func BenchmarkVsFloor(b *testing.B) {
	for _, d := range drivers {
		b.Run(d.name, func(b *testing.B) {
			db := openDB(b, d, 4)
			warm(b, db, 3)
			ctx := context.Background()
			conn, err := db.Conn(ctx)
			if err != nil {
				b.Fatal(err)
			}
			defer conn.Close()
			lock, err := conn.PrepareContext(ctx, "SELECT 1 WHERE pg_try_advisory_lock($1)")
			if err != nil {
				b.Fatal(err)
			}
			defer lock.Close()
			unlock, err := conn.PrepareContext(ctx, "SELECT 1 WHERE pg_advisory_unlock($1)")
			if err != nil {
				b.Fatal(err)
			}
			defer unlock.Close()
			floorID := uniqueKey(b, "floor").ID
			floor := func() {
				if _, err := lock.ExecContext(ctx, floorID); err != nil {
					b.Fatal(err)
				}
				if _, err := unlock.ExecContext(ctx, floorID); err != nil {
					b.Fatal(err)
				}
			}
			be := kannukipg.New(db, kannukipg.Options{})
			k := uniqueKey(b)
			cctx, cancel := context.WithCancel(ctx)
			defer cancel()
			locker := kannuki.New(be, kannuki.Options{})
			empty := func(context.Context) error { return nil }
			for _, v := range []struct {
				name string
				run  func() error
			}{
				{"backend", func() error {
					l, err := be.Acquire(cctx, k, store.Request{Wait: store.WaitForever})
					if err != nil {
						return err
					}
					return l.Release(cctx)
				}},
				{"withlock", func() error { return locker.WithLock(cctx, k.String, empty) }},
			} {
				b.Run(v.name, func(b *testing.B) {
					var tf, tv time.Duration
					for b.Loop() {
						start := time.Now()
						floor()
						mid := time.Now()
						if err := v.run(); err != nil {
							b.Fatal(err)
						}
						tf += mid.Sub(start)
						tv += time.Since(mid)
					}
					n := float64(b.N)
					b.ReportMetric(n/tf.Seconds(), "floor-cycles/s")
					b.ReportMetric(n/tv.Seconds(), "cycles/s")
					b.ReportMetric(tf.Seconds()/tv.Seconds(), "x-floor")
				})
			}
		})
	}
}

// BenchmarkPairedTimers measures what kannukipg's watchdogs (due.Queue
// fields watchdog, connDog and sockDog: one timer for all statements)
// save an uncontended cycle against a runtime timer per statement and per
// pool request (due.Queue.TimerPerNode), on each driver: two Backends on
// one pool of one connection, alternating cycles. It reports the median
// cycle of each and the ratio timer/queue (above 1 the queue pays).
func BenchmarkPairedTimers(b *testing.B) {
	for _, d := range drivers {
		b.Run(d.name, func(b *testing.B) { pairTimers(b, d) })
	}
}

func pairTimers(b *testing.B, d driver) {
	db := openDB(b, d, 1)
	queue, timer := kannukipg.New(db, kannukipg.Options{}), kannukipg.New(db, kannukipg.Options{})
	duetest.TimerPerNode(timer, "watchdog", "connDog", "sockDog")
	med := duetest.PairedCycles(b, []store.Backend{queue, timer}, []store.Key{uniqueKey(b), uniqueKey(b)})
	b.ReportMetric(med[0], "queue-ns/cycle")
	b.ReportMetric(med[1], "timer-ns/cycle")
	b.ReportMetric(med[1]/med[0], "timer/queue")
}
