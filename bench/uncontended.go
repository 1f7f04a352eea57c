package bench

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"syscall"
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
)

// Kinds of candidates.
const (
	KindFloor     = "floor"     // the raw statements on a pinned connection
	KindReference = "reference" // not a lock: a yardstick (one round trip)
	KindKannuki   = "kannuki"   // Locker.WithLock on a backend
	KindPeer      = "peer"      // another lock library
)

// Candidate is one way to lock and unlock an uncontended key.
type Candidate struct {
	Name  string
	Kind  string
	Floor string // the Name of the floor it is compared to; "" for none
	// Begin starts a block of cycles (pins a connection, prepares
	// statements) and returns one lock+unlock cycle and the end of the
	// block. What Begin and end do is not timed.
	Begin func(ctx context.Context) (cycle func(context.Context) error, end func(), err error)
}

// Family is candidates that share a connection pool: a floor and the
// Kannuki backend on the same single connection, so that both are served
// by one server process (two server processes can be scheduled very
// differently on a small machine).
type Family struct {
	Name       string
	Candidates []Candidate
	Err        error // the family could not be opened: its service is down
	close      func()
}

// Close releases the family's connections.
func (f *Family) Close() {
	if f.close != nil {
		f.close()
	}
}

// Names of the floors.
const (
	FloorPgx         = "floor: pgx, statement cache"
	FloorStdlib      = "floor: database/sql pgx/stdlib, prepared, rows affected"
	FloorPQ          = "floor: database/sql lib/pq, prepared, rows affected"
	FloorMySQLPrep   = "floor: MySQL, prepared"
	FloorMySQLInterp = "floor: MySQL, interpolateParams=true"
	FloorRedis       = "floor: Redis SET NX PX + DEL"
	FloorFlock       = "floor: open + flock + close"
	RefPgxRTT        = "reference: pgx SELECT 1 (one round trip)"

	NamePgxv5      = "kannukipgxv5 (pgxpool)"
	NamePGStdlib   = "kannukipg (pgx/stdlib)"
	NamePGPQ       = "kannukipg (lib/pq)"
	NameMySQL      = "kannukimysql"
	NameMySQLInter = "kannukimysql (interpolateParams=true)"
	NameFile       = "kannukifile"
	NameMem        = "kannukimem"
	NameRedislock  = "bsm/redislock Obtain+Release"
	NameRedsync    = "redsync Lock+Unlock"
)

// empty is the fn of every WithLock: the cycle is the lock alone.
func empty(context.Context) error { return nil }

// withLock is the candidate of a Locker on b.
func withLock(name, floor, key string, b store.Backend) Candidate {
	l := kannuki.New(b, kannuki.Options{}) // defaults: Blocking, wait forever, keepalive every 5 s
	return Candidate{Name: name, Kind: KindKannuki, Floor: floor,
		Begin: func(context.Context) (func(context.Context) error, func(), error) {
			return func(ctx context.Context) error { return l.WithLock(ctx, key, empty) }, func() {}, nil
		}}
}

// OpenFamilies opens every family of uncontended candidates. A family
// whose service is down carries Err and no candidates.
func OpenFamilies(ctx context.Context, env Env) []*Family {
	return []*Family{
		pgxFamily(ctx, env),
		sqlPGFamily(ctx, env, "pgx", FloorStdlib, NamePGStdlib),
		sqlPGFamily(ctx, env, "postgres", FloorPQ, NamePGPQ),
		mysqlFamily(ctx, env, false),
		mysqlFamily(ctx, env, true),
		redisFamily(ctx, env),
		fileFamily(env),
		memFamily(env),
	}
}

func pgxFamily(ctx context.Context, env Env) *Family {
	f := &Family{Name: "PostgreSQL, pgx"}
	pool, err := env.PgxPool(ctx, 1)
	if err != nil {
		f.Err = err
		return f
	}
	f.close = pool.Close
	kf, err := keys.Ruby{}.Derive("", env.Key("floor", "pgx"))
	if err != nil {
		f.Err = err
		return f
	}
	pinned := func(ctx context.Context, cycle func(c *pgxpool.Conn) func(context.Context) error) (func(context.Context) error, func(), error) {
		pc, err := pool.Acquire(ctx)
		if err != nil {
			return nil, nil, err
		}
		return cycle(pc), pc.Release, nil
	}
	f.Candidates = []Candidate{
		{Name: FloorPgx, Kind: KindFloor, Begin: func(ctx context.Context) (func(context.Context) error, func(), error) {
			return pinned(ctx, func(pc *pgxpool.Conn) func(context.Context) error {
				c := pc.Conn()
				return func(ctx context.Context) error {
					if _, err := c.Exec(ctx, "SELECT pg_advisory_lock($1)", kf.ID); err != nil {
						return err
					}
					var ok bool
					if err := c.QueryRow(ctx, "SELECT pg_advisory_unlock($1)", kf.ID).Scan(&ok); err != nil {
						return err
					}
					return okOr(ok, "pg_advisory_unlock returned false")
				}
			})
		}},
		{Name: RefPgxRTT, Kind: KindReference, Floor: FloorPgx, Begin: func(ctx context.Context) (func(context.Context) error, func(), error) {
			return pinned(ctx, func(pc *pgxpool.Conn) func(context.Context) error {
				c := pc.Conn()
				return func(ctx context.Context) error {
					var one int
					return c.QueryRow(ctx, "SELECT 1").Scan(&one)
				}
			})
		}},
		withLock(NamePgxv5, FloorPgx, env.Key("kannuki", "pgxv5"), kannukipgxv5.New(pool, kannukipgxv5.Options{})),
	}
	return f
}

func okOr(ok bool, msg string) error {
	if ok {
		return nil
	}
	return errors.New(msg)
}

// sqlFloor is the database/sql floor: both statements prepared once per
// block on one pinned connection; the lock runs with Exec. The unlock's
// result is read as a row, or, with byRows, from the rows-affected count of
// an Exec (unlockSQL must then return one row exactly when the unlock
// succeeded): database/sql reads no result set for it, which is the
// fastest raw form on PostgreSQL and the one kannukipg uses.
func sqlFloor(name string, db *sql.DB, lockSQL, unlockSQL string, byRows bool, arg any) Candidate {
	return Candidate{Name: name, Kind: KindFloor, Begin: func(ctx context.Context) (func(context.Context) error, func(), error) {
		conn, err := db.Conn(ctx)
		if err != nil {
			return nil, nil, err
		}
		lock, err := conn.PrepareContext(ctx, lockSQL)
		if err != nil {
			_ = conn.Close()
			return nil, nil, err
		}
		unlock, err := conn.PrepareContext(ctx, unlockSQL)
		if err != nil {
			_ = lock.Close()
			_ = conn.Close()
			return nil, nil, err
		}
		end := func() { _ = lock.Close(); _ = unlock.Close(); _ = conn.Close() }
		return func(ctx context.Context) error {
			if _, err := lock.ExecContext(ctx, arg); err != nil {
				return err
			}
			if byRows {
				res, err := unlock.ExecContext(ctx, arg)
				if err != nil {
					return err
				}
				n, err := res.RowsAffected()
				if err != nil {
					return err
				}
				return okOr(n == 1, "unlock returned false")
			}
			var ok bool
			if err := unlock.QueryRowContext(ctx, arg).Scan(&ok); err != nil {
				return err
			}
			return okOr(ok, "unlock returned false")
		}, end, nil
	}}
}

func sqlPGFamily(ctx context.Context, env Env, driver, floor, name string) *Family {
	f := &Family{Name: "PostgreSQL, database/sql " + driver}
	db, err := env.PostgresDB(ctx, driver, 1)
	if err != nil {
		f.Err = err
		return f
	}
	f.close = func() { _ = db.Close() }
	kf, err := keys.Ruby{}.Derive("", env.Key("floor", driver))
	if err != nil {
		f.Err = err
		return f
	}
	f.Candidates = []Candidate{
		sqlFloor(floor, db, "SELECT pg_advisory_lock($1)", "SELECT 1 WHERE pg_advisory_unlock($1)", true, kf.ID),
		withLock(name, floor, env.Key("kannuki", "pg", driver), kannukipg.New(db, kannukipg.Options{})),
	}
	return f
}

func mysqlFamily(ctx context.Context, env Env, interpolate bool) *Family {
	f := &Family{Name: "MySQL/MariaDB"}
	floor, name := FloorMySQLPrep, NameMySQL
	if interpolate {
		f.Name += ", interpolateParams=true"
		floor, name = FloorMySQLInterp, NameMySQLInter
	}
	db, err := env.MySQLDB(ctx, 1, interpolate)
	if err != nil {
		f.Err = err
		return f
	}
	f.close = func() { _ = db.Close() }
	lockName := env.Key("floor", "mysql", interpolate)
	fl := sqlFloor(floor, db, "SELECT GET_LOCK(?, 0)", "SELECT RELEASE_LOCK(?)", false, lockName)
	if interpolate {
		// The driver sends each statement as text with the argument
		// spliced in: one round trip, no prepared statement.
		fl = Candidate{Name: floor, Kind: KindFloor, Begin: func(ctx context.Context) (func(context.Context) error, func(), error) {
			conn, err := db.Conn(ctx)
			if err != nil {
				return nil, nil, err
			}
			return func(ctx context.Context) error {
				var ok bool
				if err := conn.QueryRowContext(ctx, "SELECT GET_LOCK(?, 0)", lockName).Scan(&ok); err != nil {
					return err
				}
				if !ok {
					return errors.New("GET_LOCK returned 0")
				}
				if err := conn.QueryRowContext(ctx, "SELECT RELEASE_LOCK(?)", lockName).Scan(&ok); err != nil {
					return err
				}
				return okOr(ok, "RELEASE_LOCK returned 0")
			}, func() { _ = conn.Close() }, nil
		}}
	}
	f.Candidates = []Candidate{
		fl,
		withLock(name, floor, env.Key("kannuki", "mysql", interpolate), kannukimysql.New(db, kannukimysql.Options{})),
	}
	return f
}

// redisLockTTL is the expiry of every Redis lock taken here: far longer
// than any hold, so that no lock expires under a holder.
const redisLockTTL = 10 * time.Second

func redisFamily(ctx context.Context, env Env) *Family {
	f := &Family{Name: "Redis"}
	client, err := env.Redis(ctx, 1)
	if err != nil {
		f.Err = err
		return f
	}
	f.close = func() { _ = client.Close() }
	floorKey := env.Key("floor", "redis")
	rl := redislock.New(client)
	rlKey := env.Key("peer", "redislock")
	rs := redsync.New(goredis.NewPool(client))
	rsKey := env.Key("peer", "redsync")
	f.Candidates = []Candidate{
		{Name: FloorRedis, Kind: KindFloor, Begin: func(context.Context) (func(context.Context) error, func(), error) {
			return func(ctx context.Context) error {
				ok, err := client.SetNX(ctx, floorKey, "x", redisLockTTL).Result()
				if err != nil {
					return err
				}
				if !ok {
					return errors.New("SET NX refused")
				}
				return client.Del(ctx, floorKey).Err()
			}, func() {}, nil
		}},
		{Name: NameRedislock, Kind: KindPeer, Floor: FloorRedis, Begin: func(context.Context) (func(context.Context) error, func(), error) {
			return func(ctx context.Context) error {
				lock, err := rl.Obtain(ctx, rlKey, redisLockTTL, nil)
				if err != nil {
					return err
				}
				return lock.Release(ctx)
			}, func() {}, nil
		}},
		{Name: NameRedsync, Kind: KindPeer, Floor: FloorRedis, Begin: func(context.Context) (func(context.Context) error, func(), error) {
			m := rs.NewMutex(rsKey) // defaults: 8 s expiry, 32 tries
			return func(ctx context.Context) error {
				if err := m.LockContext(ctx); err != nil {
					return err
				}
				ok, err := m.UnlockContext(ctx)
				if err != nil {
					return err
				}
				return okOr(ok, "redsync unlock returned false")
			}, func() {}, nil
		}},
	}
	return f
}

// benchDir makes a fresh directory for lock files.
func benchDir(env Env, what string) (string, error) {
	return os.MkdirTemp("", "kannukibench-"+env.Run+"-"+what+"-")
}

func fileFamily(env Env) *Family {
	f := &Family{Name: "files"}
	dir, err := benchDir(env, "uncontended")
	if err != nil {
		f.Err = err
		return f
	}
	be, err := kannukifile.New(dir, kannukifile.Options{})
	if err != nil {
		_ = os.RemoveAll(dir)
		f.Err = err
		return f
	}
	f.close = func() { _ = be.Close(); _ = os.RemoveAll(dir) }
	path := filepath.Join(dir, "floor.lock")
	f.Candidates = []Candidate{
		{Name: FloorFlock, Kind: KindFloor, Begin: func(context.Context) (func(context.Context) error, func(), error) {
			return func(context.Context) error {
				fd, err := syscall.Open(path, syscall.O_RDWR|syscall.O_CREAT|syscall.O_CLOEXEC, 0o600)
				if err != nil {
					return err
				}
				err = syscall.Flock(fd, syscall.LOCK_EX|syscall.LOCK_NB)
				if err == nil {
					err = syscall.Flock(fd, syscall.LOCK_UN)
				}
				return errors.Join(err, syscall.Close(fd))
			}, func() {}, nil
		}},
		withLock(NameFile, FloorFlock, env.Key("kannuki", "file"), be),
	}
	return f
}

func memFamily(env Env) *Family {
	return &Family{Name: "memory", Candidates: []Candidate{
		withLock(NameMem, "", env.Key("kannuki", "mem"), kannukimem.New()),
	}}
}

// CycleStats is the outcome of one candidate's uncontended blocks.
type CycleStats struct {
	Candidate Candidate
	// PerBlock is the cycles per second of each round's block (NaN for a
	// round whose block failed); the index is the round.
	PerBlock []float64
	Samples  []time.Duration // every timed cycle
	Errors   int
	LastErr  error
}

// CyclesPerSec is the median of the blocks' cycles per second.
func (s *CycleStats) CyclesPerSec() float64 { return median(s.PerBlock) }

// RatioTo is the median over rounds of this candidate's cycles per second
// divided by other's in the same round: 1.0 means as fast as other.
func (s *CycleStats) RatioTo(other *CycleStats) float64 {
	if other == nil {
		return math.NaN()
	}
	var rs []float64
	for i := range min(len(s.PerBlock), len(other.PerBlock)) {
		rs = append(rs, s.PerBlock[i]/other.PerBlock[i])
	}
	return median(rs)
}

// maxBlockCycles caps the cycles of one block, for the fast in-process
// candidates (and the memory their samples take).
const maxBlockCycles = 50_000

// runBlock runs cycles of c for about d and records them in s as round r.
func runBlock(ctx context.Context, c Candidate, d time.Duration, s *CycleStats, r int) {
	runCycles(ctx, c, d, maxBlockCycles, s, r)
}

// runCycles runs up to limit cycles of c for at most d and records them in
// s as round r.
func runCycles(ctx context.Context, c Candidate, d time.Duration, limit int, s *CycleStats, r int) {
	for len(s.PerBlock) <= r {
		s.PerBlock = append(s.PerBlock, math.NaN())
	}
	cycle, end, err := c.Begin(ctx)
	if err != nil {
		s.Errors++
		s.LastErr = err
		return
	}
	defer end()
	cctx := ctx
	if c.Kind != KindKannuki && c.Kind != KindPeer {
		// The raw forms run on a context that cannot end, their fastest:
		// given one that can, lib/pq starts a goroutine per statement,
		// go-sql-driver/mysql wakes its watcher goroutine, database/sql
		// starts one per query and pgx registers a callback. Kannuki and
		// the peers get ctx, as an application would give them.
		cctx = context.WithoutCancel(ctx)
	}
	var spent time.Duration
	n := 0
	start := time.Now()
	for n < limit && time.Since(start) < d {
		t0 := time.Now()
		err := cycle(cctx)
		dt := time.Since(t0)
		if err != nil {
			s.Errors++
			s.LastErr = err
			if ctx.Err() != nil {
				return
			}
			continue
		}
		spent += dt
		n++
		s.Samples = append(s.Samples, dt)
	}
	if n > 0 {
		s.PerBlock[r] = float64(n) / spent.Seconds()
	}
}

// RunUncontended interleaves the candidates of fams in blocks of about d:
// rounds rounds of one block each, the order rotating every round, after
// one untimed warm-up round. It returns the stats in candidate order.
func RunUncontended(ctx context.Context, fams []*Family, rounds int, d time.Duration, progress func(string)) []*CycleStats {
	var cands []Candidate
	for _, f := range fams {
		cands = append(cands, f.Candidates...)
	}
	stats := make([]*CycleStats, len(cands))
	for i, c := range cands {
		stats[i] = &CycleStats{Candidate: c}
	}
	warm := make([]*CycleStats, len(cands))
	for i, c := range cands {
		warm[i] = &CycleStats{Candidate: c}
		runBlock(ctx, c, min(d, 50*time.Millisecond), warm[i], 0)
	}
	for r := range rounds {
		if ctx.Err() != nil {
			break
		}
		progress(fmt.Sprintf("uncontended: round %d of %d", r+1, rounds))
		for j := range cands {
			i := (r + j) % len(cands)
			runBlock(ctx, cands[i], d, stats[i], r)
		}
	}
	return stats
}
