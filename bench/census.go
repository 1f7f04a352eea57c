package bench

import (
	"bufio"
	"context"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/kannuki-go/kannuki/keys"
	"github.com/kannuki-go/kannuki/store"

	"github.com/jackc/pgx/v5"
	"github.com/kannuki-go/kannuki"
	"github.com/kannuki-go/kannuki/kannukimysql"
	"github.com/kannuki-go/kannuki/kannukipg"
	"github.com/kannuki-go/kannuki/kannukipgxv5"
	"github.com/redis/go-redis/v9"
)

// WaitCensus is what one held lock and its waiters cost on a database:
// connections, and statements the server ran for them while they waited.
type WaitCensus struct {
	Name     string
	Waiters  int // goroutines waiting on the held key
	PoolSize int // of the waiters' Locker
	// LocalQueue: the waiters share one Locker with its local queue on
	// (the default); otherwise with Options.NoLocalQueue.
	LocalQueue bool
	// WaitingSessions is the number of server sessions waiting on the key
	// (pg_locks not granted; MySQL processlist in GET_LOCK).
	WaitingSessions int
	// PoolInUse is the most connections of the waiters' pool in use at
	// once while they wait; HolderInUse the same for the holder's pool.
	PoolInUse   int
	HolderInUse int
	Window      time.Duration // how long the sessions were watched
	// WaiterStatements is how many statements the waiting sessions
	// started during the window, over all of them: 0 means each waited in
	// the one statement it had sent before the window.
	WaiterStatements int
	// HolderStatements is how many statements the holder's session ran
	// during the window (the keepalive).
	HolderStatements int
	// Drained is the time from the holder's release until every waiter
	// had held and released the key.
	Drained time.Duration
	Err     error
}

// lockerUnderTest is a Locker and what to ask its pool.
type lockerUnderTest struct {
	l     *kannuki.Locker
	inUse func() int
	close func()
}

// CensusKind names a backend the census can watch.
type CensusKind string

// Backends the census watches.
const (
	CensusPgxv5 CensusKind = NamePgxv5
	CensusPG    CensusKind = NamePGStdlib
	CensusMySQL CensusKind = NameMySQL
)

func openLockerUnderTest(ctx context.Context, env Env, kind CensusKind, poolSize int, opts kannuki.Options) (*lockerUnderTest, error) {
	return openLockerUnderTestPgx(ctx, env, kind, poolSize, opts, kannukipgxv5.Options{})
}

// openLockerUnderTestPgx is openLockerUnderTest with the kannukipgxv5
// options to use for CensusPgxv5.
func openLockerUnderTestPgx(ctx context.Context, env Env, kind CensusKind, poolSize int, opts kannuki.Options, pgxOpts kannukipgxv5.Options) (*lockerUnderTest, error) {
	switch kind {
	case CensusPgxv5:
		pool, err := env.PgxPool(ctx, poolSize)
		if err != nil {
			return nil, err
		}
		return &lockerUnderTest{
			l:     kannuki.New(kannukipgxv5.New(pool, pgxOpts), opts),
			inUse: func() int { return int(pool.Stat().AcquiredConns()) },
			close: pool.Close,
		}, nil
	case CensusPG, CensusMySQL:
		var db *sql.DB
		var err error
		var b store.Backend
		if kind == CensusPG {
			db, err = env.PostgresDB(ctx, "pgx", poolSize)
			if err == nil {
				b = kannukipg.New(db, kannukipg.Options{})
			}
		} else {
			db, err = env.MySQLDB(ctx, poolSize, false)
			if err == nil {
				b = kannukimysql.New(db, kannukimysql.Options{})
			}
		}
		if err != nil {
			return nil, err
		}
		return &lockerUnderTest{
			l:     kannuki.New(b, opts),
			inUse: func() int { return db.Stats().InUse },
			close: func() { _ = db.Close() },
		}, nil
	}
	return nil, fmt.Errorf("unknown census backend %q", kind)
}

// watcher samples the server's view of one key's sessions.
type watcher interface {
	// snapshot returns, per session, whether it holds the key and when its
	// current or last statement started.
	snapshot(ctx context.Context) (map[int64]session, error)
	// slack is how far apart two statement starts may be and still be
	// the same statement (0: the server reports exact starts).
	slack() time.Duration
	close()
}

type session struct {
	holder bool
	start  time.Time
}

type pgWatcher struct {
	c     *pgx.Conn
	query string
}

func newPGWatcher(ctx context.Context, env Env, k store.Key) (*pgWatcher, error) {
	cctx, cancel := context.WithTimeout(ctx, connectTimeout)
	defer cancel()
	c, err := pgx.Connect(cctx, env.pgDSN())
	if err != nil {
		return nil, err
	}
	classid, objid := keys.ClassObjID(k.ID)
	q := fmt.Sprintf(`SELECT l.pid::bigint, l.granted, a.query_start FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
WHERE l.locktype = 'advisory' AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
AND l.classid = %d AND l.objid = %d AND l.objsubid = 1`, classid, objid)
	return &pgWatcher{c: c, query: q}, nil
}

func (w *pgWatcher) snapshot(ctx context.Context) (map[int64]session, error) {
	rows, err := w.c.Query(ctx, w.query)
	if err != nil {
		return nil, err
	}
	out := map[int64]session{}
	for rows.Next() {
		var pid int64
		var s session
		var start *time.Time
		if err := rows.Scan(&pid, &s.holder, &start); err != nil {
			rows.Close()
			return nil, err
		}
		if start != nil {
			s.start = *start
		}
		out[pid] = s
	}
	rows.Close()
	return out, rows.Err()
}

func (w *pgWatcher) slack() time.Duration { return 0 }

func (w *pgWatcher) close() { _ = w.c.Close(context.Background()) }

type mysqlWatcher struct {
	db      *sql.DB
	name    string
	pattern string
}

func newMySQLWatcher(ctx context.Context, env Env, k store.Key) (*mysqlWatcher, error) {
	db, err := env.MySQLDB(ctx, 1, false)
	if err != nil {
		return nil, err
	}
	// The wait statement carries the name as a hex literal.
	return &mysqlWatcher{db: db, name: k.Name, pattern: "%GET_LOCK(CONVERT(X'" + hex.EncodeToString([]byte(k.Name)) + "'%"}, nil
}

func (w *mysqlWatcher) snapshot(ctx context.Context) (map[int64]session, error) {
	// A session's statement started TIME_MS ago (MariaDB; for an idle
	// session: its last statement ended then, close enough at this scale).
	rows, err := w.db.QueryContext(ctx, `SELECT ID, ID = IS_USED_LOCK(?), TIME_MS FROM information_schema.PROCESSLIST
WHERE ID <> CONNECTION_ID() AND (ID = IS_USED_LOCK(?) OR INFO LIKE ?)`, w.name, w.name, w.pattern)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	now := time.Now()
	out := map[int64]session{}
	for rows.Next() {
		var id int64
		var holder sql.NullBool
		var ms float64
		if err := rows.Scan(&id, &holder, &ms); err != nil {
			return nil, err
		}
		start := now.Add(-time.Duration(ms * float64(time.Millisecond)))
		out[id] = session{holder: holder.Valid && holder.Bool, start: start}
	}
	return out, rows.Err()
}

// slack covers the client's clock standing in for the server's: the
// sampling query's own round trip, and scheduling on a busy machine.
func (w *mysqlWatcher) slack() time.Duration { return 50 * time.Millisecond }

func (w *mysqlWatcher) close() { _ = w.db.Close() }

// CensusPlan sets the length of a census.
type CensusPlan struct {
	Window time.Duration // how long the waiting sessions are watched
	Every  time.Duration // sampling period
	Settle time.Duration // longest wait for the waiters to queue
}

// RunCensus holds a key on kind (a Locker and a pool of its own, as
// another process would) and starts waiters goroutines waiting on it,
// sharing one Locker with a pool of poolSize, its local queue on or off;
// then it watches the server for plan.Window.
func RunCensus(ctx context.Context, env Env, kind CensusKind, waiters, poolSize int, localQueue bool, plan CensusPlan) *WaitCensus {
	c := &WaitCensus{Name: string(kind), Waiters: waiters, PoolSize: poolSize, LocalQueue: localQueue}
	c.Err = census(ctx, env, kind, c, plan)
	return c
}

func census(ctx context.Context, env Env, kind CensusKind, c *WaitCensus, plan CensusPlan) error {
	hl, err := openLockerUnderTest(ctx, env, kind, 2, kannuki.Options{})
	if err != nil {
		return err
	}
	defer hl.close()
	lt, err := openLockerUnderTest(ctx, env, kind, c.PoolSize, kannuki.Options{NoLocalQueue: !c.LocalQueue})
	if err != nil {
		return err
	}
	defer lt.close()
	key := env.Key("census", kind, c.Waiters, c.LocalQueue)
	k, err := lt.l.Key(key)
	if err != nil {
		return err
	}
	var w watcher
	if kind == CensusMySQL {
		w, err = newMySQLWatcher(ctx, env, k)
	} else {
		w, err = newPGWatcher(ctx, env, k)
	}
	if err != nil {
		return err
	}
	defer w.close()

	h, err := hl.l.Acquire(ctx, key)
	if err != nil {
		return err
	}
	released := false
	defer func() {
		if !released {
			_ = h.Release(context.Background())
		}
	}()
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	var errMu sync.Mutex
	var werr error
	for range c.Waiters {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := lt.l.WithLock(wctx, key, empty); err != nil && wctx.Err() == nil {
				errMu.Lock()
				werr = err
				errMu.Unlock()
			}
		}()
	}
	// Wait until as many sessions wait as the pool (or the queue) allows.
	expect := min(c.Waiters, c.PoolSize)
	if c.LocalQueue {
		expect = 1
	}
	// Two snapshots in a row must show them, so that every waiter is
	// inside its waiting statement when the window opens.
	deadline := time.Now().Add(plan.Settle)
	var snap map[int64]session
	for seen := 0; seen < 2; {
		snap, err = w.snapshot(ctx)
		if err != nil {
			return err
		}
		if time.Now().After(deadline) {
			break
		}
		if waiting(snap) >= expect {
			seen++
		} else {
			seen = 0
		}
		time.Sleep(plan.Every / 4)
	}
	// Watch: count the distinct statement starts of every session.
	starts := map[int64][]time.Time{}
	holders := map[int64]bool{}
	slack := w.slack()
	note := func(s map[int64]session) {
		for pid, ss := range s {
			known := false
			for _, t := range starts[pid] {
				if d := ss.start.Sub(t); d <= slack && d >= -slack {
					known = true
				}
			}
			if !known {
				starts[pid] = append(starts[pid], ss.start)
			}
			holders[pid] = holders[pid] || ss.holder
		}
	}
	note(snap)
	t0 := time.Now()
	inUse := 0
	for time.Since(t0) < plan.Window {
		time.Sleep(plan.Every)
		s, err := w.snapshot(ctx)
		if err != nil {
			return err
		}
		note(s)
		c.WaitingSessions = max(c.WaitingSessions, waiting(s))
		inUse = max(inUse, lt.inUse())
		c.HolderInUse = max(c.HolderInUse, hl.inUse())
	}
	c.Window = time.Since(t0)
	c.PoolInUse = inUse
	for pid, ss := range starts {
		if holders[pid] {
			c.HolderStatements += len(ss) - 1
		} else {
			c.WaiterStatements += len(ss) - 1
		}
	}
	// Let them through and time the drain.
	released = true
	r0 := time.Now()
	if err := h.Release(ctx); err != nil {
		return err
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	t := time.NewTimer(60 * time.Second)
	defer t.Stop()
	select {
	case <-done:
		c.Drained = time.Since(r0)
	case <-t.C:
		cancel()
		<-done
		return errors.New("waiters did not get through within 60 s")
	}
	return werr
}

func waiting(s map[int64]session) int {
	n := 0
	for _, ss := range s {
		if !ss.holder {
			n++
		}
	}
	return n
}

// RedisCensus is what a Redis peer's waiters cost the server.
type RedisCensus struct {
	Name    string
	Waiters int
	Window  time.Duration
	// ClientPerWaiterSec is the commands per second per waiter the
	// waiters' client sent (counted in the client: exact).
	ClientPerWaiterSec float64
	// ServerPerWaiterSec is the growth of INFO commandstats per second per
	// waiter (all the server's clients, so others' load adds to it).
	ServerPerWaiterSec float64
	Err                error
}

// redisCalls sums the calls of every command in INFO commandstats but INFO.
func redisCalls(ctx context.Context, c *redis.Client) (int64, error) {
	info, err := c.Info(ctx, "commandstats").Result()
	if err != nil {
		return 0, err
	}
	var total int64
	sc := bufio.NewScanner(strings.NewReader(info))
	for sc.Scan() {
		line := sc.Text()
		name, rest, ok := strings.Cut(line, ":")
		if !ok || !strings.HasPrefix(name, "cmdstat_") || name == "cmdstat_info" {
			continue
		}
		for f := range strings.SplitSeq(rest, ",") {
			if v, ok := strings.CutPrefix(f, "calls="); ok {
				n, _ := strconv.ParseInt(v, 10, 64)
				total += n
			}
		}
	}
	return total, sc.Err()
}

// RunRedisCensus holds a key with c's library while waiters goroutines
// wait for it with that library, and counts the commands they send over
// window.
func RunRedisCensus(ctx context.Context, env Env, c Contender, waiters int, window time.Duration) *RedisCensus {
	rc := &RedisCensus{Name: c.Name, Waiters: waiters}
	rc.Err = redisCensus(ctx, env, c, rc, window)
	return rc
}

func redisCensus(ctx context.Context, env Env, c Contender, rc *RedisCensus, window time.Duration) error {
	admin, err := env.Redis(ctx, 1)
	if err != nil {
		return err
	}
	defer func() { _ = admin.Close() }()
	holder, err := c.Open(ctx, env, 1)
	if err != nil {
		return err
	}
	defer holder.Close()
	s, err := c.Open(ctx, env, rc.Waiters)
	if err != nil {
		return err
	}
	defer s.Close()
	key := env.Key("census", c.Name, rc.Waiters)
	hctx, hcancel := context.WithCancel(ctx)
	defer hcancel()
	held := make(chan struct{})
	hdone := make(chan error, 1)
	go func() {
		hdone <- holder.Do(hctx, 0, key, func() {
			close(held)
			<-hctx.Done()
		})
	}()
	select {
	case <-held:
	case err := <-hdone:
		return fmt.Errorf("holder: %w", err)
	}
	wctx, wcancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for i := range rc.Waiters {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for wctx.Err() == nil {
				_ = s.Do(wctx, i, key, func() {})
			}
		}()
	}
	time.Sleep(window / 5) // let every waiter start its loop
	server0, err := redisCalls(ctx, admin)
	client0 := s.Commands()
	t0 := time.Now()
	if err == nil {
		time.Sleep(window)
		var server1 int64
		server1, err = redisCalls(ctx, admin)
		rc.Window = time.Since(t0)
		perWaiterSec := rc.Window.Seconds() * float64(rc.Waiters)
		rc.ClientPerWaiterSec = float64(s.Commands()-client0) / perWaiterSec
		rc.ServerPerWaiterSec = float64(server1-server0) / perWaiterSec
	}
	wcancel()
	wg.Wait()
	hcancel()
	<-hdone
	return err
}
