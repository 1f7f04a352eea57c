package bench

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kannuki-go/kannuki/keys"
	"github.com/kannuki-go/kannuki/store"

	"github.com/bsm/redislock"
	"github.com/go-redsync/redsync/v4"
	"github.com/go-redsync/redsync/v4/redis/goredis/v9"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/kannuki-go/kannuki"
	"github.com/kannuki-go/kannuki/kannukifile"
	"github.com/kannuki-go/kannuki/kannukimem"
	"github.com/kannuki-go/kannuki/kannukimysql"
	"github.com/kannuki-go/kannuki/kannukipg"
	"github.com/kannuki-go/kannuki/kannukipgxv5"
	"github.com/redis/go-redis/v9"
)

// Contender is a lock that goroutines of one process fight over.
type Contender struct {
	Name string
	Kind string // KindKannuki or KindPeer
	// Polls is set for libraries that wait by retrying on a timer; their
	// waiters are canceled at the end of a block instead of being let
	// through one by one.
	Polls bool
	// Slow is set for retry loops of about 100 ms: blocks take fewer samples.
	Slow bool
	// Open prepares for goroutines goroutines at once (a pool of that size
	// and a spare).
	Open func(ctx context.Context, env Env, goroutines int) (*Session, error)
}

// Session is an opened Contender.
type Session struct {
	// Do takes key for goroutine i (waiting as long as ctx allows), runs
	// fn and releases. It returns errGaveUp when the library stopped
	// waiting by itself.
	Do    func(ctx context.Context, i int, key string, fn func()) error
	Close func()
	// Commands counts the commands the session's clients sent (Redis
	// only; nil elsewhere).
	Commands func() int64
}

// errGaveUp is a peer library that stopped retrying by itself (redsync's
// tries, redislock's TTL-bounded wait): the caller calls again.
var errGaveUp = errors.New("the library gave up waiting")

// Suffixes of the Kannuki contenders' names.
const (
	// SepLockers: every goroutine has its own Locker (and, for files, its
	// own Backend), as if each were a process of its own: every waiter
	// waits in the database.
	SepLockers = " · a Locker per goroutine"
	// OneLocker: the goroutines share one Locker, whose local queue lets
	// one of them at a time hold or wait for the key in the database.
	OneLocker = " · one shared Locker"
)

// lockerSession runs goroutine i on lockers[i % len(lockers)].
func lockerSession(lockers []*kannuki.Locker, close func()) *Session {
	return &Session{
		Do: func(ctx context.Context, i int, key string, fn func()) error {
			return lockers[i%len(lockers)].WithLock(ctx, key, func(context.Context) error { fn(); return nil })
		},
		Close: close,
	}
}

// kannukiContender makes a contender of a backend opened for n goroutines.
// With shared, the goroutines share one Locker; otherwise each has its own
// Locker on the same Backend.
func kannukiContender(name string, shared bool, open func(ctx context.Context, env Env, n int) (store.Backend, func(), error)) Contender {
	if shared {
		name += OneLocker
	} else {
		name += SepLockers
	}
	return Contender{Name: name, Kind: KindKannuki, Open: func(ctx context.Context, env Env, n int) (*Session, error) {
		b, closeFn, err := open(ctx, env, n)
		if err != nil {
			return nil, err
		}
		lockers := []*kannuki.Locker{kannuki.New(b, kannuki.Options{})}
		for !shared && len(lockers) < n {
			lockers = append(lockers, kannuki.New(b, kannuki.Options{}))
		}
		return lockerSession(lockers, closeFn), nil
	}}
}

func openPgxv5(ctx context.Context, env Env, n int) (store.Backend, func(), error) {
	pool, err := env.PgxPool(ctx, n+1)
	if err != nil {
		return nil, nil, err
	}
	return kannukipgxv5.New(pool, kannukipgxv5.Options{}), pool.Close, nil
}

func openPG(ctx context.Context, env Env, n int) (store.Backend, func(), error) {
	db, err := env.PostgresDB(ctx, "pgx", n+1)
	if err != nil {
		return nil, nil, err
	}
	return kannukipg.New(db, kannukipg.Options{}), func() { _ = db.Close() }, nil
}

func openMySQL(ctx context.Context, env Env, n int) (store.Backend, func(), error) {
	db, err := env.MySQLDB(ctx, n+1, false)
	if err != nil {
		return nil, nil, err
	}
	return kannukimysql.New(db, kannukimysql.Options{}), func() { _ = db.Close() }, nil
}

// fileContender gives each goroutine its own kannukifile Backend on one
// directory: a Backend queues its own waiters in memory, so separate
// Backends are what separate processes would be.
func fileContender() Contender {
	return Contender{Name: NameFile + SepLockers, Kind: KindKannuki, Open: func(_ context.Context, env Env, n int) (*Session, error) {
		dir, err := benchDir(env, "handoff")
		if err != nil {
			return nil, err
		}
		var bes []*kannukifile.Backend
		closeAll := func() {
			for _, be := range bes {
				_ = be.Close()
			}
			_ = os.RemoveAll(dir)
		}
		var lockers []*kannuki.Locker
		for range n {
			be, err := kannukifile.New(dir, kannukifile.Options{})
			if err != nil {
				closeAll()
				return nil, err
			}
			bes = append(bes, be)
			lockers = append(lockers, kannuki.New(be, kannuki.Options{}))
		}
		return lockerSession(lockers, closeAll), nil
	}}
}

// NamePgxv5NoRelock is kannukipgxv5 with its leases' Relock hidden: the
// local queue's handoff as it was before Relock (the unlock, then the next
// goroutine's try), for comparison.
const NamePgxv5NoRelock = NamePgxv5 + ", Relock hidden"

// plainLeases hides the store.Relocker of its Backend's leases; the
// keepalive (store.Checker) still reaches them.
type plainLeases struct{ store.Backend }

func (b plainLeases) Acquire(ctx context.Context, k store.Key, req store.Request) (store.Lease, error) {
	l, err := b.Backend.Acquire(ctx, k, req)
	if err != nil {
		return nil, err
	}
	return plainLease{l}, nil
}

type plainLease struct{ store.Lease }

func (l plainLease) Check(ctx context.Context) error {
	if c, ok := l.Lease.(store.Checker); ok {
		return c.Check(ctx)
	}
	return nil
}

// Names of the handoff floors.
const (
	HandoffFloorPgx   = "floor: pgx, a pinned connection per goroutine"
	HandoffFloorMySQL = "floor: MySQL GET_LOCK, a pinned connection per goroutine"
)

// pgxHandoffFloor is the raw statements with no library: each goroutine
// waits in pg_advisory_lock on a connection of its own, so the server hands
// the lock over; the unlock is pg_advisory_unlock. Both go through pgx's
// statement cache.
func pgxHandoffFloor() Contender {
	return Contender{Name: HandoffFloorPgx, Kind: KindFloor, Open: func(ctx context.Context, env Env, n int) (*Session, error) {
		pool, err := env.PgxPool(ctx, n)
		if err != nil {
			return nil, err
		}
		conns := make([]*pgxpool.Conn, 0, n)
		closeAll := func() {
			for _, c := range conns {
				c.Release()
			}
			pool.Close()
		}
		for range n {
			c, err := pool.Acquire(ctx)
			if err != nil {
				closeAll()
				return nil, err
			}
			conns = append(conns, c)
		}
		return &Session{
			Do: func(ctx context.Context, i int, key string, fn func()) error {
				k, err := keys.Ruby{}.Derive("", key)
				if err != nil {
					return err
				}
				c := conns[i].Conn()
				if _, err := c.Exec(ctx, "SELECT pg_advisory_lock($1)", k.ID); err != nil {
					return err
				}
				fn()
				var ok bool
				if err := c.QueryRow(context.WithoutCancel(ctx), "SELECT pg_advisory_unlock($1)", k.ID).Scan(&ok); err != nil {
					return err
				}
				return okOr(ok, "pg_advisory_unlock returned false")
			},
			Close: closeAll,
		}, nil
	}}
}

// mysqlHandoffFloor is GET_LOCK and RELEASE_LOCK, prepared once on a
// pinned connection per goroutine.
func mysqlHandoffFloor() Contender {
	return Contender{Name: HandoffFloorMySQL, Kind: KindFloor, Open: func(ctx context.Context, env Env, n int) (*Session, error) {
		db, err := env.MySQLDB(ctx, n, false)
		if err != nil {
			return nil, err
		}
		type pinned struct {
			conn         *sql.Conn
			lock, unlock *sql.Stmt
		}
		ps := make([]pinned, 0, n)
		closeAll := func() {
			for _, p := range ps {
				_ = p.lock.Close()
				_ = p.unlock.Close()
				_ = p.conn.Close()
			}
			_ = db.Close()
		}
		for range n {
			var p pinned
			var err error
			if p.conn, err = db.Conn(ctx); err == nil {
				// MariaDB fails GET_LOCK(name, -1) at once: wait an hour.
				if p.lock, err = p.conn.PrepareContext(ctx, "SELECT GET_LOCK(?, 3600)"); err == nil {
					if p.unlock, err = p.conn.PrepareContext(ctx, "SELECT RELEASE_LOCK(?)"); err != nil {
						_ = p.lock.Close()
					}
				}
				if err != nil {
					_ = p.conn.Close()
				}
			}
			if err != nil {
				closeAll()
				return nil, err
			}
			ps = append(ps, p)
		}
		return &Session{
			Do: func(ctx context.Context, i int, key string, fn func()) error {
				p := ps[i]
				var ok bool
				if err := p.lock.QueryRowContext(ctx, key).Scan(&ok); err != nil {
					return err
				}
				if !ok {
					return errors.New("GET_LOCK returned 0")
				}
				fn()
				if err := p.unlock.QueryRowContext(context.WithoutCancel(ctx), key).Scan(&ok); err != nil {
					return err
				}
				return okOr(ok, "RELEASE_LOCK returned 0")
			},
			Close: closeAll,
		}, nil
	}}
}

// Contenders returns the handoff candidates: the raw floors (pgx, MySQL),
// Kannuki on each backend, with
// a Locker per goroutine (as separate processes would be) and, for the
// databases, with one shared Locker (its local queue); and the Redis peers
// with their documented retry and tuned to 1 ms.
func Contenders() []Contender {
	return []Contender{
		pgxHandoffFloor(),
		mysqlHandoffFloor(),
		kannukiContender(NamePgxv5, false, openPgxv5),
		kannukiContender(NamePGStdlib, false, openPG),
		kannukiContender(NameMySQL, false, openMySQL),
		fileContender(),
		kannukiContender(NameMem, false, func(context.Context, Env, int) (store.Backend, func(), error) {
			return kannukimem.New(), func() {}, nil
		}),
		kannukiContender(NamePgxv5, true, openPgxv5),
		kannukiContender(NamePgxv5NoRelock, true, func(ctx context.Context, env Env, n int) (store.Backend, func(), error) {
			b, closeFn, err := openPgxv5(ctx, env, n)
			if err != nil {
				return nil, nil, err
			}
			return plainLeases{b}, closeFn, nil
		}),
		kannukiContender(NamePGStdlib, true, openPG),
		kannukiContender(NameMySQL, true, openMySQL),
		redislockContender("bsm/redislock, LinearBackoff(100ms)", 100*time.Millisecond, true),
		redislockContender("bsm/redislock, LinearBackoff(1ms)", time.Millisecond, false),
		redsyncContender("redsync, defaults (50-250 ms, 32 tries)", false),
		redsyncContender("redsync, 1 ms retry", true),
	}
}

// countHook counts the commands a go-redis client sends.
type countHook struct{ n *atomic.Int64 }

func (h countHook) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h countHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		h.n.Add(1)
		return next(ctx, cmd)
	}
}

func (h countHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		h.n.Add(int64(len(cmds)))
		return next(ctx, cmds)
	}
}

// countedRedis opens a client whose commands are counted.
func countedRedis(ctx context.Context, env Env, n int) (*redis.Client, func() int64, error) {
	c, err := env.Redis(ctx, n+1)
	if err != nil {
		return nil, nil, err
	}
	var sent atomic.Int64
	c.AddHook(countHook{&sent})
	return c, sent.Load, nil
}

// releaseTimeout bounds a peer's release, which runs on a fresh context so
// that the end of a block never leaves a lock behind.
const releaseTimeout = 5 * time.Second

func redislockContender(name string, retry time.Duration, slow bool) Contender {
	return Contender{Name: name, Kind: KindPeer, Polls: true, Slow: slow, Open: func(ctx context.Context, env Env, n int) (*Session, error) {
		c, sent, err := countedRedis(ctx, env, n)
		if err != nil {
			return nil, err
		}
		rl := redislock.New(c)
		return &Session{
			Do: func(ctx context.Context, _ int, key string, fn func()) error {
				// Without a deadline on ctx, Obtain waits at most the TTL,
				// and then reports ErrNotObtained, or the deadline of its
				// own context when that ends during a pause.
				lock, err := rl.Obtain(ctx, key, redisLockTTL, &redislock.Options{RetryStrategy: redislock.LinearBackoff(retry)})
				if errors.Is(err, redislock.ErrNotObtained) || errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
					return errGaveUp
				}
				if err != nil {
					return err
				}
				fn()
				rctx, cancel := context.WithTimeout(context.Background(), releaseTimeout)
				defer cancel()
				return lock.Release(rctx)
			},
			Close:    func() { _ = c.Close() },
			Commands: sent,
		}, nil
	}}
}

func redsyncContender(name string, tuned bool) Contender {
	return Contender{Name: name, Kind: KindPeer, Polls: true, Slow: !tuned, Open: func(ctx context.Context, env Env, n int) (*Session, error) {
		c, sent, err := countedRedis(ctx, env, n)
		if err != nil {
			return nil, err
		}
		rs := redsync.New(goredis.NewPool(c))
		var opts []redsync.Option
		if tuned {
			opts = append(opts, redsync.WithRetryDelay(time.Millisecond), redsync.WithTries(1<<30))
		}
		return &Session{
			Do: func(ctx context.Context, _ int, key string, fn func()) error {
				m := rs.NewMutex(key, opts...)
				err := m.LockContext(ctx)
				if errors.Is(err, redsync.ErrFailed) && ctx.Err() == nil {
					return errGaveUp
				}
				if err != nil {
					return err
				}
				fn()
				rctx, cancel := context.WithTimeout(context.Background(), releaseTimeout)
				defer cancel()
				_, err = m.UnlockContext(rctx)
				return err
			},
			Close:    func() { _ = c.Close() },
			Commands: sent,
		}, nil
	}}
}

// relay passes the lock around waiters goroutines plus the holder and
// records the handoffs: the time from the end of one holder's fn (where
// its release begins) to the start of the next holder's fn. A goroutine
// that released queues again only once the next holder has started, so it
// never takes the lock straight back and, with a hold long enough for it
// to queue, waiters goroutines wait at every release.
type relay struct {
	mu       sync.Mutex
	gen      uint64
	next     chan struct{}
	released time.Time
	by       int
	skip     int // handoffs still to discard (warm-up: connections opening)
	want     int
	samples  []time.Duration
	full     chan struct{}
	done     atomic.Bool
}

func newRelay(skip, want int) *relay {
	return &relay{next: make(chan struct{}), skip: skip, want: want, full: make(chan struct{}), by: -1}
}

// start is called first thing in goroutine i's fn; it returns the
// generation of this hold.
func (r *relay) start(i int) uint64 {
	now := time.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.by >= 0 && r.by != i && !r.done.Load() {
		if r.skip > 0 {
			r.skip--
		} else {
			r.samples = append(r.samples, now.Sub(r.released))
			if len(r.samples) >= r.want {
				r.stop()
			}
		}
	}
	r.gen++
	close(r.next)
	r.next = make(chan struct{})
	return r.gen
}

// stop ends the block (r.mu held).
func (r *relay) stop() {
	if r.done.CompareAndSwap(false, true) {
		close(r.full)
	}
}

// end is called last thing in goroutine i's fn.
func (r *relay) end(i int) {
	r.mu.Lock()
	r.released = time.Now()
	r.by = i
	r.mu.Unlock()
}

// awaitNext waits until another goroutine took the lock after generation
// g, or the block ended.
func (r *relay) awaitNext(ctx context.Context, g uint64) {
	r.mu.Lock()
	if r.gen != g {
		r.mu.Unlock()
		return
	}
	c := r.next
	r.mu.Unlock()
	select {
	case <-c:
	case <-r.full: // the block is over: nobody may come
	case <-ctx.Done():
	}
}

// HandoffStats is the outcome of one contender at one number of waiters.
type HandoffStats struct {
	Contender Contender
	Waiters   int
	Samples   []time.Duration
	GaveUp    int // calls the library ended by itself, called again
	Errors    int
	LastErr   error
	Blocks    int
	// CommandsPerWaiterSec is the commands per second per waiting
	// goroutine the clients sent during the blocks (Redis only, else 0).
	CommandsPerWaiterSec float64
}

// fail counts an error and keeps it as the last.
func (s *HandoffStats) fail(err error) {
	s.Errors++
	s.LastErr = err
}

// P returns the q-quantile of the handoffs.
func (s *HandoffStats) P(q float64) time.Duration { return quantile(s.Samples, q) }

// HandoffPlan sets the size of a handoff block.
type HandoffPlan struct {
	Hold      time.Duration // each holder holds this long
	Want      int           // handoffs per block
	WantSlow  int           // handoffs per block for Slow contenders
	Limit     time.Duration // longest block
	DrainWait time.Duration // how long non-polling waiters get to finish after a block
}

// runHandoffBlock runs one block of c with waiters waiters and adds to st.
func runHandoffBlock(ctx context.Context, env Env, c Contender, waiters int, plan HandoffPlan, st *HandoffStats, block int) {
	s, err := c.Open(ctx, env, waiters+1)
	if err != nil {
		st.fail(err)
		return
	}
	defer s.Close()
	st.Blocks++
	want := plan.Want
	if c.Slow {
		want = plan.WantSlow
	}
	key := env.Key("handoff", c.Name, waiters, block)
	r := newRelay(waiters+1, want)
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		wg      sync.WaitGroup
		errMu   sync.Mutex
		started = time.Now()
		cmds0   int64
	)
	if s.Commands != nil {
		cmds0 = s.Commands()
	}
	for i := range waiters + 1 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !r.done.Load() && rctx.Err() == nil {
				var g uint64
				err := s.Do(rctx, i, key, func() {
					g = r.start(i)
					if !r.done.Load() {
						time.Sleep(plan.Hold)
					}
					r.end(i)
				})
				switch {
				case err == nil:
					r.awaitNext(rctx, g)
				case rctx.Err() != nil || r.done.Load():
					return
				default:
					errMu.Lock()
					if errors.Is(err, errGaveUp) {
						st.GaveUp++
					} else {
						st.fail(err)
						if st.Errors > 100 {
							r.mu.Lock()
							r.stop()
							r.mu.Unlock()
						}
					}
					errMu.Unlock()
				}
			}
		}()
	}
	t := time.NewTimer(plan.Limit)
	select {
	case <-r.full:
	case <-t.C:
	case <-ctx.Done():
	}
	t.Stop()
	r.mu.Lock()
	r.stop()
	samples := append([]time.Duration(nil), r.samples...)
	r.mu.Unlock()
	elapsed := time.Since(started)
	if s.Commands != nil && waiters > 0 {
		rate := float64(s.Commands()-cmds0) / elapsed.Seconds() / float64(waiters)
		// Running mean over blocks.
		st.CommandsPerWaiterSec += (rate - st.CommandsPerWaiterSec) / float64(st.Blocks)
	}
	if c.Polls {
		cancel()
	}
	finished := make(chan struct{})
	go func() { wg.Wait(); close(finished) }()
	dt := time.NewTimer(plan.DrainWait)
	select {
	case <-finished:
	case <-dt.C:
		cancel() // the waiters give up; Kannuki undoes any grant that raced it
		<-finished
	}
	dt.Stop()
	st.Samples = append(st.Samples, samples...)
}

// RefIdleRTT names the handoff section's yardstick: one round trip on a
// connection that sat idle for the hold time, as the holder's and the
// waiters' connections do in a handoff.
const RefIdleRTT = "reference: pgx SELECT 1 after a pause of the hold time (one round trip)"

// RunHandoff measures every contender at each number of waiters: for each
// number, rounds rounds in which each contender runs one block, the order
// rotating every round. Each round also samples RefIdleRTT, reported as a
// contender of KindReference after the others.
func RunHandoff(ctx context.Context, env Env, cs []Contender, waiterCounts []int, rounds int, plan HandoffPlan, progress func(string)) []*HandoffStats {
	var out []*HandoffStats
	for _, w := range waiterCounts {
		stats := make([]*HandoffStats, len(cs))
		for i, c := range cs {
			stats[i] = &HandoffStats{Contender: c, Waiters: w}
		}
		ref := &HandoffStats{Contender: Contender{Name: RefIdleRTT, Kind: KindReference}, Waiters: w}
		for r := range rounds {
			progress(fmt.Sprintf("handoff: %d waiters, round %d of %d", w, r+1, rounds))
			for j := range cs {
				if ctx.Err() != nil {
					break
				}
				i := (r + j) % len(cs)
				runHandoffBlock(ctx, env, cs[i], w, plan, stats[i], r)
			}
			idleRoundTrips(ctx, env, plan, ref)
		}
		out = append(out, stats...)
		out = append(out, ref)
	}
	return out
}

// idleRoundTrips adds one block of RefIdleRTT samples to st: on a pinned
// pgx connection, a pause of plan.Hold, then SELECT 1, timed, on a context
// that cannot be canceled (the fastest form, as for the floors).
//
// In a handoff the holder's connection has been idle for the hold time
// when its unlock goes out, and the waiter's server process and goroutine
// have been asleep: on a small machine the CPUs have dropped into idle
// states and the processes out of their caches, and waking them costs
// several times a round trip made in a tight loop (section 1's reference).
// This is a round trip made under those conditions.
func idleRoundTrips(ctx context.Context, env Env, plan HandoffPlan, st *HandoffStats) {
	pool, err := env.PgxPool(ctx, 1)
	if err != nil {
		st.fail(err)
		return
	}
	defer pool.Close()
	pc, err := pool.Acquire(ctx)
	if err != nil {
		st.fail(err)
		return
	}
	defer pc.Release()
	st.Blocks++
	qctx := context.WithoutCancel(ctx)
	n := max(plan.Want/3, 1)
	for i := range n + 3 { // the first 3 warm the statement cache
		time.Sleep(plan.Hold)
		t := time.Now()
		if _, err := pc.Conn().Exec(qctx, "SELECT 1"); err != nil {
			st.fail(err)
			return
		}
		if i >= 3 {
			st.Samples = append(st.Samples, time.Since(t))
		}
		if ctx.Err() != nil {
			return
		}
	}
}
