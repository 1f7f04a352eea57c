package kannukipg

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/kannuki-go/kannuki/store"

	"github.com/kannuki-go/kannuki/internal/due"
	"github.com/kannuki-go/kannuki/internal/pgsql"
	"github.com/kannuki-go/kannuki/internal/sockbound"
	"github.com/kannuki-go/kannuki/internal/sockwatch"
)

// Default values used when the corresponding Options field is zero.
const (
	DefaultReleaseTimeout = 5 * time.Second
	DefaultConnWait       = time.Second
)

// Options configure a Backend. The zero value is ready to use.
type Options struct {
	// ReleaseTimeout bounds the statements the Backend runs detached from
	// the caller's context (whose cancellation would make the driver close
	// the connection and leave the lock state unknown): the pid lookup and
	// the clean-up after a failed or canceled wait, the keepalive, and on
	// pgx/stdlib also the first try and the unlock (see the package
	// documentation for other drivers). For the keepalive and the unlock a
	// sooner deadline of their context bounds them instead. 0 means
	// DefaultReleaseTimeout.
	ReleaseTimeout time.Duration

	// ConnWait bounds getting a connection the pool can give at once (an
	// idle one, or a new one while the pool has room): the dial, or the
	// driver's check of a reused connection. A request never waits for a
	// connection another caller holds beyond its own budget: a try (Wait
	// 0) not at all (it fails at once with an error matching
	// ErrNoConnection), a bounded wait up to its Wait, a WaitForever
	// request as long as its context allows. 0 means DefaultConnWait. See
	// the package documentation, "Pool size".
	ConnWait time.Duration

	// Form chooses the fast-path statement form. The zero value, FormAuto,
	// is right for pgx/stdlib and lib/pq.
	Form StatementForm

	// SessionPooler declares that the pool's connections go through a
	// connection pooler that gives each client connection a server session
	// of its own for as long as it is open (PgBouncer pool_mode=session).
	// Without it, on pgx/stdlib the first Acquire checks that the server
	// process it talks to is the one announced when the connection opened
	// (a pooler that shares server sessions announces its own), and
	// session locks fail with an error matching store.ErrUnsupported
	// when it is not: behind a pooler in transaction mode a session lock
	// would stay on a server session that other clients then use. lib/pq
	// does not tell the announced process, so a pool on lib/pq is never
	// checked. Transaction-scoped locks (AcquireTx, RunTx) are safe behind
	// any pooler and never check.
	SessionPooler bool

	// NoWatch turns the socket watch off; a lost lock is then found by the
	// keepalive or the release. With the watch on (the default), the
	// socket of a held lock's connection is watched while no statement
	// runs on it, and a session the server ended is reported at once (see
	// the package documentation, "Socket watch"): on pgx/stdlib always,
	// on lib/pq with a Dialer.
	NoWatch bool

	// Dialer, when set, is the Dialer the pool's lib/pq connector dials
	// with (pq.Connector.Dialer): through it the Backend finds the socket
	// of a lib/pq connection to watch. pgx/stdlib needs none.
	Dialer *Dialer
}

// Backend is the PostgreSQL lock store over a *sql.DB. It implements
// store.Backend and store.Lister; its leases implement store.Checker,
// store.Relocker and store.LossWatcher.
// It is safe for concurrent use. It does not own db: closing the pool is
// the caller's job (after every lease is released).
type Backend struct {
	db             *sql.DB
	releaseTimeout time.Duration
	connWait       time.Duration
	form           StatementForm
	sessionPooler  bool
	pooler         pgsql.PoolerCheck // are session locks safe on this pool? (pooler.go)

	// timers is true when statements may carry a timeout context cheaply
	// (pgx/stdlib: a callback and a socket deadline). See fast.
	timers bool

	// prep holds FormPrepared's statements per driver connection.
	prep prepared

	// watchdog cancels a fast statement that runs past ReleaseTimeout, and
	// connDog a pool request that runs past ConnWait: one timer for all
	// instead of a timer each (see fast and conn). With sockDog, against a
	// runtime timer per statement they pay a little: BenchmarkPairedTimers,
	// time per cycle with timers / with the queues, pgx/stdlib 0.99-1.06
	// (median 1.021), lib/pq 1.003-1.016 (median 1.007), -count 5,
	// 2026-12-08. In a paired A/B of whole WithLock cycles (pgx/stdlib)
	// against commit 1c792e5 (medians of 40-100 rounds, spread +-15%),
	// 1.00-1.04x its time with the queues and 1.08-1.09x with a timer per
	// statement.
	watchdog due.Queue
	connDog  due.Queue

	// socks and sockDog bound a lease's statements through its socket on
	// pgx/stdlib (socket.go).
	socks   sockets
	sockDog due.Queue

	// poller watches the sockets of held locks (watch.go) unless
	// Options.NoWatch (watch false), each once its lock has been held for
	// sockwatch.DefaultDelay; dialer finds lib/pq's sockets.
	poller sockwatch.Poller
	watch  bool
	dialer *Dialer

	// rowsAffected is the driver check of countsRows: 0 not yet known,
	// 1 the driver reports rows affected for SELECT, 2 it does not.
	rowsAffected atomic.Int32
}

var (
	_ store.Backend     = (*Backend)(nil)
	_ store.Lister      = (*Backend)(nil)
	_ store.Checker     = (*lease)(nil)
	_ store.Relocker    = (*lease)(nil)
	_ store.LossWatcher = (*lease)(nil)
)

// New returns a Backend on db, a pool opened with any PostgreSQL driver for
// database/sql (pgx/stdlib, lib/pq). Every held lock pins one connection
// of db until it is released.
func New(db *sql.DB, opts Options) *Backend {
	b := &Backend{db: db, releaseTimeout: opts.ReleaseTimeout, connWait: opts.ConnWait, form: opts.Form, sessionPooler: opts.SessionPooler,
		watch: !opts.NoWatch, dialer: opts.Dialer}
	if b.releaseTimeout <= 0 {
		b.releaseTimeout = DefaultReleaseTimeout
	}
	if b.connWait <= 0 {
		b.connWait = DefaultConnWait
	}
	b.watchdog.Fire = due.FireCancel
	b.connDog.Fire = due.FireCancel
	b.sockDog.Fire = sockbound.Fire
	pgx := db != nil && isPgx(db)
	b.timers = pgx
	switch {
	case b.form == FormAuto && pgx:
		b.form = FormBound
	case b.form == FormAuto, b.form > FormPrepared:
		b.form = FormPrepared
	}
	return b
}

// Form returns the statement form in use (FormAuto resolved).
func (b *Backend) Form() StatementForm { return b.form }

// Acquire implements store.Backend. It takes a connection from the pool,
// tries once (one round trip) and, if the lock is held and req.Wait allows,
// waits on the server in a single statement bounded by lock_timeout. See
// the package documentation for cancellation and the pool.
func (b *Backend) Acquire(ctx context.Context, key store.Key, req store.Request) (store.Lease, error) {
	switch {
	case b == nil || b.db == nil:
		return nil, fmt.Errorf("%w: nil Backend or *sql.DB", store.ErrInvalidArgument)
	case ctx == nil:
		return nil, fmt.Errorf("%w: nil context", store.ErrInvalidArgument)
	case req.Mode != store.ModeExclusive && req.Mode != store.ModeShared:
		return nil, fmt.Errorf("%w: unknown lock mode %d", store.ErrInvalidArgument, req.Mode)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	start := time.Now()
	conn, err := b.conn(ctx, req.Wait)
	if err != nil {
		return nil, err
	}
	if err := b.checkSession(ctx, conn, key); err != nil {
		_ = conn.Close() // no lock statement ran on it
		return nil, err
	}
	l := &lease{b: b, conn: conn, key: key, mode: req.Mode}
	if b.timers {
		l.sock = b.socks.of(conn, netConnOf)
	}

	ok, err := l.try(ctx)
	if err != nil {
		if granted, err := pgsql.Settle(ctx, l.settler(ctx), err, false); !granted {
			if ctx.Err() == nil {
				err = fmt.Errorf("try lock: %w", err)
			}
			return nil, err
		}
		ok = true // a grant the error came with (it never does for a try)
	}
	if ok {
		l.startWatch()
		return l, nil
	}
	if req.Wait == 0 {
		l.putBack()
		return nil, fmt.Errorf("held elsewhere: %w", store.ErrNotAcquired)
	}
	wait := req.Wait
	if wait > 0 {
		if wait -= time.Since(start); wait <= 0 {
			l.putBack()
			return nil, fmt.Errorf("lock still held after %s: %w", req.Wait, store.ErrNotAcquired)
		}
	} else {
		wait = store.WaitForever
	}
	if err := l.wait(ctx, wait); err != nil {
		return nil, err
	}
	l.startWatch()
	return l, nil
}

// conn takes a connection from the pool, bounded as Options.ConnWait says.
//
// The pool request itself is not canceled with ctx: database/sql dials new
// connections and lets the driver check reused ones (pgx/stdlib pings a
// connection idle for over a second) under the request's context, and a
// cancel in the middle closes a healthy connection or wastes a dial. Under
// a storm of canceled requests that empties the pool faster than it can be
// refilled. So when the pool has a connection to give (an idle one, or room
// to dial), the request runs here detached from ctx, bounded by the smaller
// of its bound and ConnWait, and ctx is checked once it returns; when the
// pool is exhausted and the wait is long, the request runs on a goroutine
// of its own so that ctx can end the wait, and a connection that arrives
// after that is handed straight back to the pool.
func (b *Backend) conn(ctx context.Context, wait time.Duration) (*sql.Conn, error) {
	busy, n := poolBusy(b.db)
	if busy && wait == 0 {
		// A try does not wait for a connection another caller holds.
		return nil, fmt.Errorf("%w: all %d connections in use (each held or awaited lock pins a connection): %w", ErrNoConnection, n, store.ErrNotAcquired)
	}
	bound := time.Duration(-1) // none: as long as ctx allows
	switch {
	case wait >= 0 && busy:
		bound = wait // waiting for another caller's connection spends the budget
	case wait >= 0:
		bound = max(wait, b.connWait) // a dial or a driver check gets ConnWait
	}
	detached := context.WithoutCancel(ctx)
	if ctx.Done() == nil {
		// Nothing can end ctx: wait the whole bound right here.
		rctx, cancel := detached, context.CancelFunc(func() {})
		if bound >= 0 {
			rctx, cancel = context.WithTimeout(detached, bound)
		}
		defer cancel()
		c, err := b.db.Conn(rctx)
		if err != nil {
			return nil, b.connErr(ctx, bound, ctxDone(rctx) != nil, err)
		}
		return c, nil
	}
	if !busy {
		// A connection is to be had at once (idle, or room to dial).
		start := time.Now()
		rctx, limit := due.WithCancel(&b.connDog, detached, start.Add(b.connWait))
		c, err := b.db.Conn(rctx)
		expired := limit.Stop(&b.connDog)
		switch {
		case err == nil:
			if cerr := ctx.Err(); cerr != nil {
				_ = c.Close() // fresh from the pool: it holds nothing
				return nil, cerr
			}
			return c, nil
		case ctxDone(ctx) != nil || !expired || bound == b.connWait:
			return nil, b.connErr(ctx, bound, expired, err)
		}
		// The pool filled up meanwhile: wait out the rest below.
		if bound >= 0 {
			left := bound - time.Since(start)
			if left <= 0 {
				return nil, b.connErr(ctx, bound, true, err)
			}
			return b.connSlow(ctx, detached, left, bound)
		}
	}
	return b.connSlow(ctx, detached, bound, bound)
}

// poolBusy reports whether db has no connection to give at once (none
// idle, no room to dial one) and its MaxOpenConns.
func poolBusy(db *sql.DB) (bool, int) {
	st := db.Stats()
	return st.MaxOpenConnections > 0 && st.Idle == 0 && st.OpenConnections >= st.MaxOpenConnections, st.MaxOpenConnections
}

// connSlow waits for a pool connection on a goroutine of its own, so that
// ctx can end the wait without canceling the request.
func (b *Backend) connSlow(ctx, detached context.Context, bound, total time.Duration) (*sql.Conn, error) {
	rctx, cancel := context.WithCancel(detached)
	if bound >= 0 {
		cancel()
		rctx, cancel = context.WithTimeout(detached, bound)
	}
	type result struct {
		c   *sql.Conn
		err error
	}
	got := make(chan result)
	abandoned := make(chan struct{})
	go func() {
		c, err := b.db.Conn(rctx)
		select {
		case got <- result{c, err}:
		case <-abandoned:
			if c != nil {
				_ = c.Close() // fresh from the pool: it holds nothing
			}
			cancel()
		}
	}()
	select {
	case r := <-got:
		cancel()
		if r.err != nil {
			return nil, b.connErr(ctx, total, ctxDone(rctx) != nil, r.err)
		}
		return r.c, nil
	case <-ctx.Done():
		close(abandoned)
		// A request waiting for a free slot need not outlive the caller
		// by much; one in a dial or a driver check gets ConnWait to finish.
		time.AfterFunc(b.connWait, cancel)
		return nil, ctx.Err()
	}
}

// connErr explains a failed pool request; expired is true when the
// request's own bound ran out.
func (b *Backend) connErr(ctx context.Context, bound time.Duration, expired bool, err error) error {
	if cerr := ctxDone(ctx); cerr != nil {
		return cerr
	}
	if expired && bound >= 0 {
		st := b.db.Stats()
		return fmt.Errorf("%w within %s (%d of %d in use; each held or awaited lock pins a connection): %w",
			ErrNoConnection, bound, st.InUse, st.MaxOpenConnections, store.ErrNotAcquired)
	}
	if notGranted(err) {
		// A new session needs room in the lock table as it starts.
		return fmt.Errorf("a new PostgreSQL session could not start: %w", pgsql.CapacityError(err))
	}
	return fmt.Errorf("get a PostgreSQL connection: %w", err)
}

// ctxDone is ctx.Err(), also when the deadline has passed but ctx's timer
// has not fired yet (a dial bounded by the same deadline can fail first).
func ctxDone(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if dl, ok := ctx.Deadline(); ok && !time.Now().Before(dl) {
		return context.DeadlineExceeded
	}
	return nil
}

// The Backend's own statements never run under the caller's ctx: both
// drivers answer a context's end by closing the connection (pgx/stdlib
// sets a past deadline on its socket; lib/pq sends a cancel request, then
// closes), which would leave the lock state unknown and cost the
// connection. They run detached from ctx's cancellation instead.

// fast returns the context of the two statements of every lock cycle, the
// try and the unlock, which never wait on the server, when they cannot be
// bounded through the connection's socket (socket.go: a lease on
// pgx/stdlib normally can; a caller's transaction cannot). On pgx/stdlib they
// are bounded by ReleaseTimeout (and, for the unlock, by a sooner deadline
// of ctx), which costs a callback. Other drivers get no bound: lib/pq
// starts a goroutine for every statement whose context can end (measured
// here at 15-20% of uncontended throughput on a 2-core machine under load)
// and never interrupts a blocked read anyway, so a timer would not bound a
// dead network; TCP keepalive does.
//
// The bound is a cancelable context that the Backend's watchdog cancels
// when the statement is still running after ReleaseTimeout. A context
// with a deadline would do the same with a runtime timer per statement,
// and adding and stopping a timer twice per lock cycle measured 2-4% of
// the uncontended cycle on pgx/stdlib against this (cycles interleaved
// with the raw floor on one connection, medians).
func (b *Backend) fast(ctx context.Context, useDeadline bool) (context.Context, context.CancelFunc) {
	if !b.timers {
		return context.WithoutCancel(ctx), func() {}
	}
	if useDeadline {
		if dl, ok := ctx.Deadline(); ok && time.Until(dl) < b.releaseTimeout {
			return b.bounded(ctx, true) // a sooner deadline: rare enough for a timer
		}
	}
	cctx, g := due.WithCancel(&b.watchdog, context.WithoutCancel(ctx), time.Now().Add(b.releaseTimeout))
	return cctx, func() { g.Stop(&b.watchdog) }
}

// bounded returns a context detached from ctx's cancellation and bounded
// by ReleaseTimeout, or by ctx's deadline when useDeadline is set and that
// is sooner and still ahead. For the pid lookup, the clean-up after a wait
// and the keepalive.
func (b *Backend) bounded(ctx context.Context, useDeadline bool) (context.Context, context.CancelFunc) {
	d := b.releaseTimeout
	if useDeadline {
		if dl, ok := ctx.Deadline(); ok {
			if left := time.Until(dl); left > 0 && left < d {
				d = left
			}
		}
	}
	return context.WithTimeout(context.WithoutCancel(ctx), d)
}

// boolStmt runs q, a statement returning one boolean ("SELECT <bool>
// ..."), with args if any. When the driver reports rows affected for
// SELECT (pgx, lib/pq) it runs q's execForm through ExecContext and reads
// the count: one round trip, no result set, and none of the goroutine
// database/sql starts for a query whose context can end. Otherwise it runs
// q as a query.
func (b *Backend) boolStmt(ctx context.Context, e execer, q string, args ...any) (bool, error) {
	counts, err := b.countsRows(ctx, e)
	if err != nil {
		return false, err
	}
	if counts {
		return execBool(ctx, e, execForm(q), args...)
	}
	return queryBool(ctx, e, q, args...)
}

// countsRows reports whether the driver reports rows affected for SELECT,
// checking once per Backend (two round trips on e). A driver that answered
// 0 for a granted try would leave the lock on a pooled connection; one
// that answered 1 for a refused try would let two holders in.
func (b *Backend) countsRows(ctx context.Context, e execer) (bool, error) {
	switch b.rowsAffected.Load() {
	case 1:
		return true, nil
	case 2:
		return false, nil
	}
	count := func(q string) (n int64, counted bool, err error) {
		res, err := e.ExecContext(ctx, q)
		if err != nil {
			return 0, false, err
		}
		n, err = res.RowsAffected()
		return n, err == nil, nil
	}
	n0, ok0, err := count("SELECT 1 WHERE false")
	if err != nil {
		return false, err
	}
	n1, ok1, err := count("SELECT 1")
	if err != nil {
		return false, err
	}
	if ok0 && ok1 && n0 == 0 && n1 == 1 {
		b.rowsAffected.Store(1)
		return true, nil
	}
	b.rowsAffected.Store(2)
	return false, nil
}

// Held implements store.Backend: whether any session holds key in this
// database, in any mode. It runs on any pooled connection (none of which
// holds a lock) and honours ctx.
func (b *Backend) Held(ctx context.Context, key store.Key) (bool, error) {
	if b == nil || b.db == nil {
		return false, fmt.Errorf("%w: nil Backend or *sql.DB", store.ErrInvalidArgument)
	}
	if ctx == nil {
		return false, fmt.Errorf("%w: nil context", store.ErrInvalidArgument)
	}
	// The text differs per key, so it goes through Exec (simple protocol,
	// parsed once and forgotten), not through a driver's statement cache.
	held, err := b.boolStmt(ctx, b.db, pgsql.Held(key))
	if err != nil {
		if cerr := ctx.Err(); cerr != nil && errors.Is(err, cerr) {
			return false, cerr
		}
		return false, err
	}
	return held, nil
}
