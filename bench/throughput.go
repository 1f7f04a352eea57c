package bench

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/kannuki-go/kannuki"
	"github.com/kannuki-go/kannuki/kannukipgxv5"
	"github.com/kannuki-go/kannuki/keys"
)

// ThroughputCase is one throughput configuration.
type ThroughputCase struct {
	Backend    CensusKind // CensusPgxv5 or CensusPG
	Goroutines int
	HotKeys    int // 0: every goroutine its own key; n: goroutine i locks key i mod n
	PoolSize   int
	// NoLocalQueue turns the Locker's local queue off
	// (kannuki.Options.NoLocalQueue): every waiter waits in the database.
	NoLocalQueue bool
}

// Label names the key distribution.
func (c ThroughputCase) Label() string {
	l := "distinct keys"
	if c.HotKeys > 0 {
		l = fmt.Sprintf("%d hot keys", c.HotKeys)
	}
	if c.NoLocalQueue {
		l += ", NoLocalQueue"
	}
	return l
}

// ThroughputStats is the outcome of one case.
type ThroughputStats struct {
	Case     ThroughputCase
	PerBlock []float64 // WithLock calls per second, one per round
	// MaxInUse is the most pool connections in use at once, MaxSessions
	// the most server sessions of this run (application_name) seen.
	MaxInUse    int
	MaxSessions int
	Errors      int
	LastErr     error
}

// OpsPerSec is the median over blocks.
func (s *ThroughputStats) OpsPerSec() float64 { return median(s.PerBlock) }

// RatioTo is the median over rounds of s's calls per second divided by
// other's in the same round.
func (s *ThroughputStats) RatioTo(other *ThroughputStats) float64 {
	if other == nil {
		return nan()
	}
	var rs []float64
	for i := range min(len(s.PerBlock), len(other.PerBlock)) {
		rs = append(rs, s.PerBlock[i]/other.PerBlock[i])
	}
	return median(rs)
}

// ThroughputPlan sets the length of a block.
type ThroughputPlan struct {
	Warm, Measure time.Duration
	Every         time.Duration // sampling period of the connection counts
}

// sessionCounter counts the server sessions of the run.
type sessionCounter struct{ c *pgx.Conn }

func newSessionCounter(ctx context.Context, env Env) (*sessionCounter, error) {
	cctx, cancel := context.WithTimeout(ctx, connectTimeout)
	defer cancel()
	c, err := pgx.Connect(cctx, env.pgDSN())
	if err != nil {
		return nil, err
	}
	return &sessionCounter{c}, nil
}

func (s *sessionCounter) count(ctx context.Context) (int, error) {
	var n int
	err := s.c.QueryRow(ctx, "SELECT count(*) FROM pg_stat_activity WHERE application_name = current_setting('application_name') AND pid <> pg_backend_pid()").Scan(&n)
	return n, err
}

func (s *sessionCounter) close() { _ = s.c.Close(context.Background()) }

func runThroughputBlock(ctx context.Context, env Env, tc ThroughputCase, plan ThroughputPlan, st *ThroughputStats, round int, sc *sessionCounter) {
	for len(st.PerBlock) <= round {
		st.PerBlock = append(st.PerBlock, nan())
	}
	tg, err := openThroughputTarget(ctx, env, tc, round)
	if err != nil {
		st.Errors++
		st.LastErr = err
		return
	}
	defer tg.close()
	var (
		stop   atomic.Bool
		ops    atomic.Int64
		errs   atomic.Int64
		lastMu sync.Mutex
		wg     sync.WaitGroup
	)
	for i := range tc.Goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			op, done, err := tg.worker(ctx, i)
			if err != nil {
				errs.Add(1)
				lastMu.Lock()
				st.LastErr = err
				lastMu.Unlock()
				return
			}
			defer done()
			for !stop.Load() && ctx.Err() == nil {
				if err := op(ctx); err != nil {
					errs.Add(1)
					lastMu.Lock()
					st.LastErr = err
					lastMu.Unlock()
					continue
				}
				ops.Add(1)
			}
		}()
	}
	time.Sleep(plan.Warm)
	n0, t0 := ops.Load(), time.Now()
	for time.Since(t0) < plan.Measure {
		time.Sleep(plan.Every)
		st.MaxInUse = max(st.MaxInUse, tg.inUse())
		if sc != nil {
			if n, err := sc.count(ctx); err == nil {
				st.MaxSessions = max(st.MaxSessions, n)
			}
		}
	}
	n1, elapsed := ops.Load(), time.Since(t0)
	stop.Store(true)
	wg.Wait()
	st.Errors += int(errs.Load())
	st.PerBlock[round] = float64(n1-n0) / elapsed.Seconds()
}

// ThroughputFloor is the Backend of the throughput floor cases: each
// goroutine runs the raw pgx statements on a connection of its own, on a
// key of its own.
const ThroughputFloor CensusKind = "floor: pgx, a pinned connection per goroutine"

// throughputTarget is what the goroutines of a throughput block run.
type throughputTarget struct {
	// worker prepares goroutine i and returns its operation.
	worker func(ctx context.Context, i int) (op func(context.Context) error, done func(), err error)
	inUse  func() int
	close  func()
}

func openThroughputTarget(ctx context.Context, env Env, tc ThroughputCase, round int) (*throughputTarget, error) {
	names := make([]string, tc.Goroutines)
	for i := range names {
		j := i
		if tc.HotKeys > 0 {
			j = i % tc.HotKeys
		}
		names[i] = env.Key("throughput", tc.Backend, tc.Goroutines, tc.HotKeys, tc.NoLocalQueue, round, j)
	}
	if tc.Backend == ThroughputFloor {
		pool, err := env.PgxPool(ctx, tc.PoolSize)
		if err != nil {
			return nil, err
		}
		return &throughputTarget{
			worker: func(ctx context.Context, i int) (func(context.Context) error, func(), error) {
				k, err := keys.Ruby{}.Derive("", names[i])
				if err != nil {
					return nil, nil, err
				}
				pc, err := pool.Acquire(ctx)
				if err != nil {
					return nil, nil, err
				}
				c := pc.Conn()
				return func(ctx context.Context) error {
					if _, err := c.Exec(ctx, "SELECT pg_advisory_lock($1)", k.ID); err != nil {
						return err
					}
					var ok bool
					if err := c.QueryRow(ctx, "SELECT pg_advisory_unlock($1)", k.ID).Scan(&ok); err != nil {
						return err
					}
					return okOr(ok, "pg_advisory_unlock returned false")
				}, pc.Release, nil
			},
			inUse: func() int { return int(pool.Stat().AcquiredConns()) },
			close: pool.Close,
		}, nil
	}
	lt, err := openLockerUnderTest(ctx, env, tc.Backend, tc.PoolSize, kannuki.Options{NoLocalQueue: tc.NoLocalQueue})
	if err != nil {
		return nil, err
	}
	return &throughputTarget{
		worker: func(_ context.Context, i int) (func(context.Context) error, func(), error) {
			return func(ctx context.Context) error { return lt.l.WithLock(ctx, names[i], empty) }, func() {}, nil
		},
		inUse: lt.inUse,
		close: lt.close,
	}, nil
}

// RunThroughput runs every case once per round, the order rotating.
func RunThroughput(ctx context.Context, env Env, cases []ThroughputCase, rounds int, plan ThroughputPlan, progress func(string)) []*ThroughputStats {
	stats := make([]*ThroughputStats, len(cases))
	for i, c := range cases {
		stats[i] = &ThroughputStats{Case: c}
	}
	sc, err := newSessionCounter(ctx, env)
	if err != nil {
		sc = nil
	} else {
		defer sc.close()
	}
	for r := range rounds {
		progress(fmt.Sprintf("throughput: round %d of %d", r+1, rounds))
		for j := range cases {
			if ctx.Err() != nil {
				return stats
			}
			i := (r + j) % len(cases)
			runThroughputBlock(ctx, env, cases[i], plan, stats[i], r, sc)
		}
	}
	return stats
}

// ScaleStats is many goroutines each trying to hold a distinct key at once.
type ScaleStats struct {
	Backend CensusKind
	// NoMultiplex: kannukipgxv5 with multiplexing off
	// (Options.SharedConns < 0), every held lock on a connection of its own.
	NoMultiplex bool
	Goroutines  int
	PoolSize    int
	Wait        time.Duration // how long each waited for its lock
	// Held is the most locks held at once; TimeToHeld how soon that was
	// reached after the start.
	Held       int
	TimeToHeld time.Duration
	// Sessions is how many PostgreSQL sessions held the keys once every
	// goroutine had its lock or had given up, as pg_locks showed them to a
	// session of its own; SessionsErr says why it could not be counted.
	Sessions    int
	SessionsErr error
	TimedOut    int // gave up waiting (for a connection) when Wait ran out
	Failed      int // any other error
	LastErr     error
	Err         error
}

// Label names the backend and its multiplexing.
func (s *ScaleStats) Label() string {
	switch {
	case s.Backend != CensusPgxv5:
		return string(s.Backend)
	case s.NoMultiplex:
		return string(s.Backend) + ", multiplexing off"
	}
	return string(s.Backend) + ", multiplexing on (default)"
}

// RunScale starts goroutines goroutines that each Acquire a distinct key
// with a wait of wait and hold it until every one has got its lock or
// given up, and counts the server sessions holding them then.
// noMultiplex turns kannukipgxv5's multiplexing off.
func RunScale(ctx context.Context, env Env, kind CensusKind, noMultiplex bool, goroutines, poolSize int, wait time.Duration) *ScaleStats {
	st := &ScaleStats{Backend: kind, NoMultiplex: noMultiplex, Goroutines: goroutines, PoolSize: poolSize, Wait: wait}
	var pgxOpts kannukipgxv5.Options
	if noMultiplex {
		pgxOpts.SharedConns = -1
	}
	lt, err := openLockerUnderTestPgx(ctx, env, kind, poolSize, kannuki.Options{}, pgxOpts)
	if err != nil {
		st.Err = err
		return st
	}
	defer lt.close()
	ids := make(map[int64]bool, goroutines)
	for i := range goroutines {
		k, err := lt.l.Key(env.Key("scale", kind, noMultiplex, i))
		if err != nil {
			st.Err = err
			return st
		}
		ids[k.ID] = true
	}
	var (
		held    atomic.Int64
		mu      sync.Mutex
		wg      sync.WaitGroup
		release = make(chan struct{})
		start   = time.Now()
	)
	for i := range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			actx, cancel := context.WithTimeout(ctx, wait)
			h, err := lt.l.Acquire(actx, env.Key("scale", kind, noMultiplex, i))
			cancel()
			if err != nil {
				mu.Lock()
				if errors.Is(err, context.DeadlineExceeded) {
					st.TimedOut++
				} else {
					st.Failed++
					st.LastErr = err
				}
				mu.Unlock()
				return
			}
			n := int(held.Add(1)) // nobody releases before the end: held only grows
			mu.Lock()
			if n > st.Held {
				st.Held, st.TimeToHeld = n, time.Since(start)
			}
			mu.Unlock()
			<-release
			_ = h.Release(context.Background())
		}()
	}
	// Wait until everyone has either got a lock or given up after wait.
	for deadline := time.Now().Add(wait + wait/2); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		mu.Lock()
		settled := int(held.Load())+st.TimedOut+st.Failed == goroutines
		mu.Unlock()
		if settled {
			break
		}
	}
	st.Sessions, st.SessionsErr = holdingSessions(ctx, env, ids)
	close(release)
	wg.Wait()
	return st
}

// holdingSessions counts, from a session of its own, the sessions that
// hold any of the bigint advisory locks ids in the current database.
func holdingSessions(ctx context.Context, env Env, ids map[int64]bool) (int, error) {
	cctx, cancel := context.WithTimeout(ctx, connectTimeout)
	defer cancel()
	c, err := pgx.Connect(cctx, env.pgDSN())
	if err != nil {
		return 0, err
	}
	defer func() { _ = c.Close(context.Background()) }()
	rows, err := c.Query(cctx, `SELECT classid::bigint, objid::bigint, pid FROM pg_locks
		WHERE locktype = 'advisory' AND objsubid = 1 AND granted
		AND database = (SELECT oid FROM pg_database WHERE datname = current_database())`)
	if err != nil {
		return 0, err
	}
	defer rows.Close()
	pids := map[int32]bool{}
	for rows.Next() {
		var classid, objid int64
		var pid int32
		if err := rows.Scan(&classid, &objid, &pid); err != nil {
			return 0, err
		}
		if ids[int64(uint64(classid)<<32|uint64(objid))] {
			pids[pid] = true
		}
	}
	return len(pids), rows.Err()
}
