package kannukipgxv5

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/kannuki-go/kannuki/store"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/kannuki-go/kannuki/internal/due"
	"github.com/kannuki-go/kannuki/internal/pgsql"
	"github.com/kannuki-go/kannuki/internal/sockbound"
	"github.com/kannuki-go/kannuki/internal/sockwatch"
)

// Backend takes PostgreSQL session-level advisory locks on connections of a
// *pgxpool.Pool. Locks taken without waiting share a few pool connections
// (multiplexing, Options.SharedConns); a lock that had to wait, or every
// lock with multiplexing off, pins a connection of its own until Release.
// A connection goes back to the pool only when it is known to hold
// nothing, and is destroyed otherwise. It implements store.Backend and
// store.Lister; its leases implement store.Checker, store.Relocker
// and store.LossWatcher (see the package documentation on lost locks,
// the socket watch and a full lock table). It is safe for
// concurrent use and does not own the pool: close the pool yourself after
// the last lock is released.
type Backend struct {
	pool   *pgxpool.Pool
	opts   Options
	pooler pgsql.PoolerCheck // are session locks safe on this pool? (pooler.go)
	mux    *muxer            // nil: multiplexing off
	// stmtDog bounds the try and the unlock on shared connections and the
	// unlock on a connection of its own, through the socket; connDog the
	// pool request of a try (TryConnTimeout), on a context it cancels
	// (watchdog.go). Against a runtime timer per statement they pay a
	// little: BenchmarkPairedTimers, time per cycle with timers / with the
	// queues, 1.00-1.02 (median 1.006) dedicated and 0.99-1.07 (median
	// 1.016) multiplexed, -count 5, 2026-12-08. In a paired A/B of whole
	// WithLock cycles against commit 1c792e5 (medians of 40-100 rounds,
	// spread +-15%), 0.96-1.01x its time with the queues and 1.06-1.17x
	// with a timer per statement.
	stmtDog due.Queue
	connDog due.Queue
	// poller watches the sockets of connections that hold locks and idle
	// (watch.go), unless Options.NoWatch.
	poller sockwatch.Poller
}

var (
	_ store.Backend = (*Backend)(nil)
	_ store.Lister  = (*Backend)(nil)
)

// New returns a Backend on pool.
func New(pool *pgxpool.Pool, opts Options) *Backend {
	b := &Backend{pool: pool, opts: opts}
	b.stmtDog.Fire = sockbound.Fire
	b.connDog.Fire = due.FireCancel
	if pool != nil {
		if n := opts.sharedConns(pool.Config().MaxConns); n > 0 {
			b.mux = newMuxer(b, n)
		}
	}
	return b
}

// Acquire implements store.Backend. See the package documentation for
// the statements it sends and how it treats a busy pool.
func (b *Backend) Acquire(ctx context.Context, key store.Key, req store.Request) (store.Lease, error) {
	start := time.Now()
	switch {
	case b == nil || b.pool == nil:
		return nil, fmt.Errorf("%w: nil pgxpool.Pool", store.ErrInvalidArgument)
	case req.Mode != store.ModeExclusive && req.Mode != store.ModeShared:
		return nil, fmt.Errorf("%w: unknown lock mode %d", store.ErrInvalidArgument, req.Mode)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if b.mux != nil {
		if l, handled, err := b.mux.acquire(ctx, key, req, start); handled {
			return l, err
		}
	}
	a, err := b.dedicated(ctx, key, req, start)
	if err != nil {
		return nil, err
	}
	return a.run(ctx, req.Wait, start)
}

// waitDedicated serves a request whose single try found the lock held
// on a connection of its own: the waiting statement, without a second try.
func (b *Backend) waitDedicated(ctx context.Context, key store.Key, req store.Request, start time.Time) (store.Lease, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if req.Wait > 0 && time.Since(start) >= req.Wait {
		return nil, fmt.Errorf("%w: %q is held", store.ErrNotAcquired, key.String)
	}
	a, err := b.dedicated(ctx, key, req, start)
	if err != nil {
		return nil, err
	}
	return a.wait(ctx, req.Wait, start)
}

// dedicated gets a connection of its own for a request.
func (b *Backend) dedicated(ctx context.Context, key store.Key, req store.Request, start time.Time) (*acquisition, error) {
	pc, err := b.conn(ctx, key, req.Wait, start)
	if err != nil {
		return nil, err
	}
	if err := b.checkSession(ctx, pc, key); err != nil {
		pc.Release() // holds nothing; pgxpool destroys it if the check broke it
		return nil, err
	}
	return &acquisition{b: b, pc: pc, c: pc.Conn(), key: key, mode: req.Mode, settle: noop, onWait: req.OnWait}, nil
}

// conn gets a connection from the pool within the budget of the request:
// ctx alone for WaitForever, the wait for a timed wait, and no waiting for
// a busy pool on a single try.
func (b *Backend) conn(ctx context.Context, key store.Key, wait time.Duration, start time.Time) (*pgxpool.Conn, error) {
	var pc *pgxpool.Conn
	var err error
	expired := false // our own budget ran out
	switch {
	case wait == 0:
		st := b.pool.Stat()
		if st.IdleConns() == 0 && st.TotalConns() >= st.MaxConns() {
			return nil, fmt.Errorf("%w: lock %q: all %d connections in use: %w", ErrPoolExhausted, key.String, st.MaxConns(), store.ErrNotAcquired)
		}
		pc, expired, err = b.tryConn(ctx)
	case wait > 0:
		actx, cancel := context.WithDeadline(ctx, start.Add(wait))
		pc, err = b.pool.Acquire(actx)
		expired = actx.Err() != nil && errors.Is(err, context.DeadlineExceeded) // read before cancel(), which would set it
		cancel()
	default:
		pc, err = b.pool.Acquire(ctx)
	}
	if err == nil {
		return pc, nil
	}
	if cerr := ctx.Err(); cerr != nil {
		return nil, cerr
	}
	if expired { // the pool had no connection for us
		return nil, fmt.Errorf("%w: lock %q: no connection free within %s: %w", ErrPoolExhausted, key.String, time.Since(start).Round(time.Millisecond), store.ErrNotAcquired)
	}
	return nil, connError(err)
}

// tryConn takes a connection from the pool for a try, bounded by
// TryConnTimeout through connDog. expired reports that the bound ran out.
func (b *Backend) tryConn(ctx context.Context) (pc *pgxpool.Conn, expired bool, err error) {
	actx, bound := due.WithCancel(&b.connDog, ctx, time.Now().Add(b.opts.tryConnTimeout()))
	pc, err = b.pool.Acquire(actx)
	return pc, bound.Stop(&b.connDog), err
}

// Held implements store.Backend: is key held by any session, in any
// mode, in the current database? It uses one pool connection for one
// statement.
func (b *Backend) Held(ctx context.Context, key store.Key) (bool, error) {
	var held bool
	if err := b.pool.QueryRow(ctx, pgsql.Held(key), pgx.QueryExecModeSimpleProtocol).Scan(&held); err != nil {
		return false, err
	}
	return held, nil
}

// Locks implements store.Lister: the advisory locks of the current
// database, held and awaited, by any client. Name is the key Kannuki wrote
// into the session's last statement (a waiter's lock statement, or a
// holder's keepalive) as pgsql.Comment escaped it, for sessions with a
// single advisory lock only: on a shared connection holding several the
// comment cannot tell which it names. It is empty for those, for locks
// taken by other software and for holders whose first keepalive has not
// run yet. ID is the bigint id; for the two-int4 form Name falls back to
// "K1,K2" (the keys.Raw spelling) when no comment names it.
func (b *Backend) Locks(ctx context.Context) ([]store.LockInfo, error) {
	rows, err := b.pool.Query(ctx, pgsql.Locks)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var rs []pgsql.LockRow
	for rows.Next() {
		var (
			r   pgsql.LockRow
			pid int32
		)
		if err := rows.Scan(&r.ClassID, &r.ObjID, &r.ObjSubID, &r.Mode, &r.Granted, &pid, &r.Application, &r.Client, &r.Since, &r.Query); err != nil {
			return nil, err
		}
		r.PID = int64(pid)
		rs = append(rs, r)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	return pgsql.LockInfos(rs), nil
}

// acquisition is one Acquire call after it got its connection.
type acquisition struct {
	b    *Backend
	pc   *pgxpool.Conn
	c    *pgx.Conn
	key  store.Key
	mode store.Mode
	// settle waits for the cancellation guard of the last statement (see
	// guarded); it runs before the connection goes to a lease or the pool.
	settle func()
	// ownDeadline: the wait's lock_timeout is ctx's deadline, so its expiry
	// is reported as the deadline's.
	ownDeadline bool
	onWait      store.WaitNotifier // Request.OnWait
}

// run tries once with the cached statement and, when the lock is held and
// the request may wait, waits on the server.
func (a *acquisition) run(ctx context.Context, wait time.Duration, start time.Time) (store.Lease, error) {
	grace := a.b.opts.releaseTimeout()
	var granted bool
	var err error
	a.settle, err = guarded(ctx, a.c, guard{grace: grace}, func(qctx context.Context) error {
		var err error
		granted, err = boolStatement(qctx, a.c, &tryText, a.key, a.mode)
		return err
	})
	if err != nil {
		return a.fail(ctx, err)
	}
	if granted {
		return a.granted(ctx)
	}
	if wait == 0 {
		a.release() // holds nothing: the try was refused
		return nil, fmt.Errorf("%w: %q is held", store.ErrNotAcquired, a.key.String)
	}
	return a.wait(ctx, wait, start)
}

// wait waits on the server for a lock a try found held, within what is
// left of the request's budget.
func (a *acquisition) wait(ctx context.Context, wait time.Duration, start time.Time) (store.Lease, error) {
	if err := ctx.Err(); err != nil {
		a.release()
		return nil, err
	}
	if wait > 0 {
		wait -= time.Since(start)
		if wait <= 0 {
			a.release()
			return nil, fmt.Errorf("%w: %q is held", store.ErrNotAcquired, a.key.String)
		}
	}
	// A deadline on ctx becomes the statement's lock_timeout when it comes
	// first, so that the server ends the wait on time by itself; a cancel
	// request (a new connection, a process fork on the server: 2-8 ms on
	// the development machine) is then needed only for an explicit
	// cancellation.
	g := guard{interrupt: true, grace: a.b.opts.releaseTimeout()}
	if dl, ok := ctx.Deadline(); ok {
		if left := time.Until(dl); (wait < 0 || left <= wait) && left <= pgsql.MaxLockTimeout {
			wait, g.ownDeadline = max(left, time.Millisecond), true
		}
	}
	wait = min(wait, pgsql.MaxLockTimeout)
	a.ownDeadline = g.ownDeadline
	// One statement for the whole wait: the server queues the session and
	// grants the lock the moment it is free; lock_timeout (local to this
	// statement's implicit transaction) bounds a timed wait.
	text := pgsql.Lock(a.key, a.mode, wait)
	if a.onWait != nil {
		a.onWait.NotifyWait() // the try found the lock held
	}
	var err error
	a.settle, err = guarded(ctx, a.c, g, func(qctx context.Context) error {
		_, err := a.c.Exec(qctx, text) // no arguments: the simple protocol, one round trip
		return err
	})
	if err != nil {
		return a.fail(ctx, err)
	}
	return a.granted(ctx)
}

// granted hands out the lease, unless ctx ended meanwhile: then the grant
// is undone on the same session and the cancellation reported.
func (a *acquisition) granted(ctx context.Context) (store.Lease, error) {
	if err := ctx.Err(); err != nil {
		a.undo()
		return nil, err
	}
	a.settle()
	return a.lease(), nil
}

// lease hands out the lock held on a.pc, whose socket the watch then
// watches: no statement runs on it until the lease's own.
func (a *acquisition) lease() *lease {
	l := &lease{b: a.b, pc: a.pc, key: a.key, mode: a.mode}
	l.mu.Lock() // the watch may fire at once
	l.watch()
	l.mu.Unlock()
	return l
}

// fail settles a lock statement that returned an error, by the rules of
// internal/pgsql (Settle), once no cancel request can hit the settling
// statements any more.
func (a *acquisition) fail(ctx context.Context, err error) (store.Lease, error) {
	a.settle()
	a.settle = noop
	granted, err := pgsql.Settle(ctx, (*settler)(a), err, a.ownDeadline)
	if granted {
		return a.lease(), nil
	}
	return nil, err
}

// settler is an acquisition as pgsql.Settle sees it.
type settler acquisition

func (s *settler) Code(err error) string   { return serverCode(err) }
func (s *settler) Closed() bool            { return s.c.IsClosed() }
func (s *settler) HeldByMe() (bool, error) { return (*acquisition)(s).heldByMe() }
func (s *settler) Undo()                   { (*acquisition)(s).undo() }
func (s *settler) Clear() bool             { return (*acquisition)(s).clear() }
func (s *settler) PutBack()                { (*acquisition)(s).release() }
func (s *settler) Destroy()                { (*acquisition)(s).destroy() }

// heldByMe asks the session itself whether it holds the key, on a fresh
// bounded context (the caller's may be gone).
func (a *acquisition) heldByMe() (bool, error) {
	ctx, cancel := context.WithTimeout(context.Background(), a.b.opts.releaseTimeout())
	defer cancel()
	var held bool
	err := a.c.QueryRow(ctx, pgsql.HeldByMe(a.key, a.mode), pgx.QueryExecModeSimpleProtocol).Scan(&held)
	return held, err
}

// undo releases a grant that must not be handed out and returns the
// connection to the pool, or destroys the connection when the unlock does
// not confirm. The unlock runs at once, even while a cancel request may
// still be on its way, so that the lock is free for others as soon as
// possible. Should that cancel request hit the unlock (57014), whether the
// unlock took effect is unknown; once no cancel request can come any more,
// a second unlock settles it: either answer leaves the session without the
// lock.
func (a *acquisition) undo() {
	ctx, cancel := context.WithTimeout(context.Background(), a.b.opts.releaseTimeout())
	defer cancel()
	ok, err := boolStatement(ctx, a.c, &unlockText, a.key, a.mode)
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == pgsql.CodeQueryCanceled && !a.c.IsClosed() {
		a.settle()
		a.settle = noop
		_, err = boolStatement(ctx, a.c, &unlockText, a.key, a.mode)
		ok = err == nil
	}
	if err != nil || !ok {
		a.destroy()
		return
	}
	a.release()
}

// clear unlocks the key once on the session, whether it holds it or not
// (settleUnlock), and returns the connection to the pool; only when the
// unlock fails is the connection destroyed (and clear false). The caller
// settled the cancellation guard.
func (a *acquisition) clear() bool {
	ctx, cancel := context.WithTimeout(context.Background(), a.b.opts.releaseTimeout())
	defer cancel()
	if err := settleUnlock(ctx, a.c, a.key, a.mode); err != nil {
		a.destroy()
		return false
	}
	a.release()
	return true
}

// release returns the connection, which holds nothing, to the pool.
func (a *acquisition) release() {
	a.settle()
	a.pc.Release()
}

func (a *acquisition) destroy() {
	a.settle()
	destroy(a.pc, a.b.opts.releaseTimeout())
}

// destroy takes the connection out of the pool and closes it, so that the
// server ends the session and frees whatever it held. pgxpool.Conn.Release
// would hand the session, and its locks, to the next user of the pool.
func destroy(pc *pgxpool.Conn, timeout time.Duration) {
	c := pc.Hijack()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	_ = c.Close(ctx) // sends Terminate; closing the socket is what counts
}
