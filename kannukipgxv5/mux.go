package kannukipgxv5

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kannuki-go/kannuki/store"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/kannuki-go/kannuki/internal/pgsql"
	"github.com/kannuki-go/kannuki/internal/sockbound"
	"github.com/kannuki-go/kannuki/internal/sockwatch"
)

// Multiplexing. Held locks share a few pool connections (shared
// connections) instead of pinning one each. The rules that keep it safe:
//
//   - Only statements that never wait run on a shared connection: the
//     try (pg_try_advisory_lock), the unlock, the keepalive and the
//     clean-up checks. They run one at a time (sem), each bounded by
//     Options.ReleaseTimeout, and are never interrupted by a caller's
//     context: a statement cut short would leave the session's locks in
//     doubt, and with them every lease on the connection.
//   - A request that has to wait takes a connection of its own from the
//     pool (the dedicated path of backend.go) and keeps it while it holds
//     the lock: a wait can last any time, and the connection would stay
//     pinned by the lock anyway. Adopting it as a shared connection would
//     let the shared set outgrow its bound under contention.
//   - PostgreSQL counts a session's advisory locks re-entrantly, so a
//     session that holds a key would grant it again to anybody asking on
//     it. A key goes on a shared connection only if that connection neither
//     holds it (in any mode) nor is trying it; the muxer keeps the books.
//   - When the state of a shared connection is in doubt (no answer, a
//     statement out of time, an unlock returned false: see failure.go) the
//     connection is destroyed, and every lease on it is told of the loss
//     before kill returns (the books keep each key's lease): the server
//     frees the session's locks as it ends it. live → dead (sharedConn.end)
//     is a shared connection's only state change; it happens once. A server error that cannot
//     have granted, or whose grant the session undid, costs nothing.
//   - While a shared connection holds locks and no statement runs on it,
//     its socket is watched (watch.go): enter disarms the watch, leave
//     re-arms it.
//   - A shared connection goes back to the pool when its last lock is
//     released, and only then: the books say it holds nothing.

// lockID identifies an advisory lock within a database: the bigint and
// the two-int4 forms are distinct key spaces.
type lockID struct {
	id   int64
	pair bool
}

func idOf(k store.Key) lockID {
	if k.Pair {
		return lockID{id: int64(k.K1)<<32 | int64(uint32(k.K2)), pair: true}
	}
	return lockID{id: k.ID}
}

// keyState is what a shared connection does with a key.
type keyState struct {
	granted bool // held; false while a try is in flight
	mode    store.Mode
	lease   *muxLease // the lease holding it, once granted: told when c dies
}

// muxer keeps the shared connections of a Backend.
type muxer struct {
	b   *Backend
	max int // shared connections at most

	mu      sync.Mutex
	conns   []*sharedConn // live shared connections
	opening int           // connections being taken from the pool for the set
	// opened is closed when an opening ends: requests that found no
	// connection but one on its way wait for it rather than fall back to a
	// connection of their own. It is made by the first such request and
	// is nil while nobody waits, so that an uncontended open makes no
	// channel.
	opened chan struct{}
}

// sharedConn is one pool connection that holds locks for many leases.
type sharedConn struct {
	m   *muxer
	pc  *pgxpool.Conn
	pid uint32
	// sem admits one statement at a time: a token is in it while a
	// goroutine uses pc.
	sem chan struct{}
	// alive is when the latest statement that succeeded on pc was sent
	// (unix nanoseconds): proof that the session, and every lock on it,
	// was there then.
	alive atomic.Int64

	// Guarded by m.mu.
	keys  map[lockID]keyState
	users int // leases on the connection plus acquisitions about to use it
	queue int // goroutines waiting for sem or holding it (picking the least busy)

	// end is c's one state change, live (nil) → dead (why it was
	// destroyed). kill makes it, once, holding both m.mu and sem; anybody
	// may read it (deadCause).
	end atomic.Pointer[connEnd]

	// Read and written by the holder of sem only (no m.mu needed).
	held    int  // keys granted on c (the books' granted entries)
	watched bool // w is registered with the Backend's poller

	bound sockbound.Bound // the watchdog's view of the running statement
	w     sockwatch.Watch // the socket watch while c holds locks and idles
}

func newMuxer(b *Backend, max int) *muxer {
	return &muxer{b: b, max: max}
}

// pickResult is what pick found for a request.
type pickResult int

const (
	pickConn      pickResult = iota // a shared connection, reserved for a try of the key
	pickHeld                        // this process holds the key in a conflicting mode on a shared connection
	pickDedicated                   // no shared connection can take the try: use a connection of its own
)

// pick finds a shared connection for a try of key in mode: one that
// neither holds the key nor tries it, preferring one with no statement
// running, then opening a new one while the set is below its bound, then
// the least busy. The connection comes back reserved (see reserve).
func (m *muxer) pick(ctx context.Context, key store.Key, mode store.Mode) (*sharedConn, pickResult, error) {
	id := idOf(key)
	mayOpen := true
	for {
		m.mu.Lock()
		var best *sharedConn
		held := false
		for _, c := range m.conns {
			if st, ok := c.keys[id]; ok {
				if st.granted && (st.mode == store.ModeExclusive || mode == store.ModeExclusive) {
					held = true
				}
				continue
			}
			if best == nil || c.queue < best.queue {
				best = c
			}
		}
		switch {
		case held:
			m.mu.Unlock()
			return nil, pickHeld, nil
		case best != nil && best.queue == 0:
		case mayOpen && len(m.conns)+m.opening < m.max:
			m.opening++
			m.mu.Unlock()
			c, err := m.open(ctx, key)
			m.mu.Lock()
			m.opening--
			if m.opened != nil {
				close(m.opened)
				m.opened = nil
			}
			if err != nil {
				m.mu.Unlock()
				if errors.Is(err, ErrPoolExhausted) {
					mayOpen = false // use the set as it is
					continue
				}
				return nil, pickDedicated, err
			}
			m.conns = append(m.conns, c)
			best = c
		}
		if best == nil && m.opening > 0 {
			if m.opened == nil {
				m.opened = make(chan struct{})
			}
			opened := m.opened
			m.mu.Unlock()
			select {
			case <-opened:
				continue
			case <-ctx.Done():
				return nil, pickDedicated, ctx.Err()
			}
		}
		if best == nil {
			m.mu.Unlock()
			return nil, pickDedicated, nil
		}
		best.reserve(id, mode)
		m.mu.Unlock()
		return best, pickConn, nil
	}
}

// open takes a connection from the pool for the shared set, without
// waiting for one another caller uses, and checks it is safe for session
// locks (pooler.go).
func (m *muxer) open(ctx context.Context, key store.Key) (*sharedConn, error) {
	st := m.b.pool.Stat()
	if st.IdleConns() == 0 && st.TotalConns() >= st.MaxConns() {
		return nil, ErrPoolExhausted
	}
	pc, expired, err := m.b.tryConn(ctx)
	if err != nil {
		if cerr := ctx.Err(); cerr != nil {
			return nil, cerr
		}
		if expired {
			return nil, ErrPoolExhausted
		}
		return nil, connError(err)
	}
	if err := m.b.checkSession(ctx, pc, key); err != nil {
		pc.Release()
		return nil, err
	}
	c := &sharedConn{
		m:    m,
		pc:   pc,
		pid:  pc.Conn().PgConn().PID(),
		sem:  make(chan struct{}, 1),
		keys: make(map[lockID]keyState),
	}
	c.w.Fire = c.fire
	return c, nil
}

// reserve books a try of id on c. Caller holds m.mu.
func (c *sharedConn) reserve(id lockID, mode store.Mode) {
	c.keys[id] = keyState{mode: mode}
	c.users++
	c.queue++
}

// tried books the outcome of a try, l when it granted (nil when not), and
// returns c to the pool if nothing uses it any more. The caller holds c's
// statement slot when l is not nil, so c cannot have died since the grant.
func (c *sharedConn) tried(id lockID, l *muxLease) {
	m := c.m
	m.mu.Lock()
	c.queue--
	if l != nil {
		c.keys[id] = keyState{granted: true, mode: l.mode, lease: l}
		c.held++
		m.mu.Unlock()
		return
	}
	c.unbookAndUnlock(id)
}

// rebook gives the key of a relock that took it again to the new lease.
// The caller holds c's statement slot.
func (c *sharedConn) rebook(l *muxLease) {
	c.m.mu.Lock()
	defer c.m.mu.Unlock()
	if st, ok := c.keys[l.id]; ok && c.deadCause() == nil {
		st.lease = l
		c.keys[l.id] = st
	}
}

// released books the end of id's lock (an unlock, or a loss) and returns
// c to the pool if it was the last lock on it. The caller holds c's
// statement slot.
func (c *sharedConn) released(id lockID) {
	c.m.mu.Lock()
	c.unbookAndUnlock(id)
}

// unbookAndUnlock takes id off c's books, unlocks m.mu, and gives c back to
// the pool when nothing uses it any more. Caller holds m.mu.
func (c *sharedConn) unbookAndUnlock(id lockID) {
	m := c.m
	if c.deadCause() == nil {
		if c.keys[id].granted {
			c.held-- // only a released lock was granted: its releaser holds the slot
		}
		delete(c.keys, id)
	}
	c.users--
	retire := m.retireLocked(c)
	m.mu.Unlock()
	if retire {
		c.pc.Release()
	}
}

// retireLocked takes c out of the set when nothing uses it and it lives;
// the caller then gives it back to the pool: the books say it holds
// nothing. Caller holds m.mu.
func (m *muxer) retireLocked(c *sharedConn) bool {
	if c.users > 0 || c.deadCause() != nil {
		return false
	}
	m.removeLocked(c)
	return true
}

func (m *muxer) removeLocked(c *sharedConn) {
	for i, x := range m.conns {
		if x == c {
			last := len(m.conns) - 1
			m.conns[i] = m.conns[last]
			m.conns[last] = nil
			m.conns = m.conns[:last]
			return
		}
	}
}

// enter waits for c's statement slot, or for ctx to end. The holder of
// the slot may run statements on c, once it turned the socket watch off
// (busy).
func (c *sharedConn) enter(ctx context.Context) error {
	select {
	case c.sem <- struct{}{}:
		return nil
	default:
	}
	select {
	case c.sem <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// busy turns the socket watch off before the holder of the slot runs a
// statement on c. A holder that runs none (a check another one answered)
// leaves the watch as it is.
func (c *sharedConn) busy() { c.unwatch() }

// leave gives the statement slot back, watching c's socket first when c
// still holds locks and the watch is off.
func (c *sharedConn) leave() {
	if !c.watched {
		c.watch()
	}
	<-c.sem
}

// connEnd is why a shared connection was destroyed.
type connEnd struct{ cause error }

// deadCause is why c was destroyed, or nil while it lives.
func (c *sharedConn) deadCause() error {
	if e := c.end.Load(); e != nil {
		return e.cause
	}
	return nil
}

// kill destroys c: its session state is in doubt. Every lease on it is
// lost from now on, and told so (its store.LossListener) before kill
// returns. The caller holds c's statement slot, so no statement runs on
// the connection any more.
func (c *sharedConn) kill(cause error) {
	m := c.m
	m.mu.Lock()
	if c.end.Load() != nil {
		m.mu.Unlock()
		return
	}
	c.end.Store(&connEnd{cause})
	leases := make([]*muxLease, 0, c.held)
	for _, st := range c.keys {
		if st.lease != nil {
			leases = append(leases, st.lease)
		}
	}
	c.keys = nil
	c.held = 0
	m.removeLocked(c)
	m.mu.Unlock()
	lost := c.lostCause(cause)
	for _, l := range leases {
		l.news.tell(lost)
	}
	c.unwatch()
	destroy(c.pc, m.b.opts.releaseTimeout())
}

// lostCause is what the leases of c, destroyed for cause, are told.
func (c *sharedConn) lostCause(cause error) error {
	return fmt.Errorf("the shared connection holding it (session %d) was closed: %w", c.pid, cause)
}

// proved records that a statement sent at t succeeded.
func (c *sharedConn) proved(t time.Time) {
	n := t.UnixNano()
	for {
		old := c.alive.Load()
		if old >= n || c.alive.CompareAndSwap(old, n) {
			return
		}
	}
}

// The try and the unlock on a shared connection are bounded by the
// muxer's watchdog (watchdog.go). The keepalive's empty statement, whose
// bound comes from its caller's context, is bounded by a deadline on the
// socket (setDeadline), not by a context deadline: pgx would watch such a context
// around the statement, and pgx never sets deadlines of its own on a
// connection whose contexts cannot be canceled. A statement that runs past
// either bound fails with a network timeout; the connection is then in an
// unknown state and destroyed.
//
// The statements run on detach(ctx): the caller's values (tracers), not
// its cancellation.

// setDeadline bounds the statements that follow on c by deadline. Only
// the holder of c's statement slot calls setDeadline and clearDeadline.
func (c *sharedConn) setDeadline(deadline time.Time) {
	_ = c.pc.Conn().PgConn().Conn().SetDeadline(deadline)
}

// clearDeadline lifts the deadline, unless c was destroyed meanwhile.
func (c *sharedConn) clearDeadline() {
	if c.deadCause() == nil {
		_ = c.pc.Conn().PgConn().Conn().SetDeadline(time.Time{})
	}
}

// detach returns ctx without its cancellation.
func detach(ctx context.Context) context.Context {
	if ctx.Done() == nil {
		return ctx
	}
	return context.WithoutCancel(ctx)
}

// try runs the single try for key on c, which pick reserved for it. It
// returns the lease when granted, (nil, nil) when the lock is held
// elsewhere, and an error when ctx ended first or the statement failed;
// in every case but a grant, c holds nothing more than before.
func (m *muxer) try(ctx context.Context, c *sharedConn, key store.Key, mode store.Mode) (store.Lease, error) {
	id := idOf(key)
	if err := c.enter(ctx); err != nil {
		c.tried(id, nil)
		return nil, err
	}
	granted, sent, err := c.runTry(ctx, key, mode)
	var l *muxLease
	if granted {
		l = &muxLease{c: c, key: key, mode: mode, id: id, checked: sent}
	}
	// Book the outcome before leaving the slot: the lease, so that a kill
	// tells it; a connection nothing uses any more goes back to the pool
	// in tried.
	c.tried(id, l)
	c.leave()
	if !granted {
		return nil, err
	}
	return l, nil
}

// runTry sends the try on c, whose statement slot the caller holds, and
// undoes a grant that came after ctx ended. granted is true only for a
// lock to hand out.
func (c *sharedConn) runTry(ctx context.Context, key store.Key, mode store.Mode) (granted bool, sent time.Time, err error) {
	if cause := c.deadCause(); cause != nil {
		return false, sent, errRetry
	}
	if err := ctx.Err(); err != nil { // nothing sent yet
		return false, sent, err
	}
	conn := c.pc.Conn()
	sctx := detach(ctx)
	c.busy()
	sent = time.Now()
	deadline := c.startBound(sent)
	defer func() {
		if c.endBound() {
			// Cut short: the session dies with whatever it held.
			c.kill(errOverdue)
			if granted {
				granted, err = false, fmt.Errorf("try lock: %w", errOverdue)
			}
		}
	}()
	granted, err = boolStatement(sctx, conn, &tryText, key, mode)
	if err != nil {
		c.settleFailedTry(sctx, deadline, key, mode, err)
		if cerr := ctx.Err(); cerr != nil {
			return false, sent, cerr
		}
		if serverCode(err) == pgsql.CodeLockTableFull {
			return false, sent, pgsql.CapacityError(err)
		}
		return false, sent, err
	}
	c.proved(sent)
	if !granted {
		return false, sent, nil
	}
	if cerr := ctx.Err(); cerr != nil {
		// The grant came after the caller gave up: undo it on the same
		// session before anything else runs there.
		ok, uerr := boolStatement(sctx, conn, &unlockText, key, mode)
		if uerr != nil || !ok {
			c.kill(fmt.Errorf("undoing a grant that raced a cancellation failed (unlock %v, %v)", ok, uerr))
		}
		return false, sent, cerr
	}
	return true, sent, nil
}

// errRetry: the shared connection pick chose died before the try was
// sent; pick another.
var errRetry = errors.New("shared connection gone")

// settleFailedTry makes sure a try that returned an error left no lock
// on c (see failure.go): a server error on a live connection (a
// pg_cancel_backend, a lost prepared statement) may come after the lock
// was granted, and session locks outlive the failed statement, so the
// key is unlocked once on the session, which undoes a grant and needs no
// room in a full lock table (53200). c is destroyed only when that cannot
// be done: no server answer, out of time, or the unlock failing too.
func (c *sharedConn) settleFailedTry(sctx context.Context, deadline time.Time, key store.Key, mode store.Mode, err error) {
	conn := c.pc.Conn()
	if serverCode(err) == "" || conn.IsClosed() || !time.Now().Before(deadline) {
		c.kill(err)
		return
	}
	if uerr := settleUnlock(sctx, conn, key, mode); uerr != nil {
		c.kill(fmt.Errorf("%w (and unlocking the key to be sure it is not held failed: %v)", err, uerr))
	}
}

// acquire serves a request through the shared connections: the try on a
// shared connection and, when the lock is held and the request may wait,
// the wait on a connection of its own. handled is false when no shared
// connection could take the try; the caller then runs the whole request
// on a connection of its own.
func (m *muxer) acquire(ctx context.Context, key store.Key, req store.Request, start time.Time) (l store.Lease, handled bool, err error) {
	for range 3 { // a connection that dies under pick's choice is rare; then give up on sharing
		c, res, err := m.pick(ctx, key, req.Mode)
		if err != nil {
			return nil, true, err
		}
		switch res {
		case pickDedicated:
			return nil, false, nil
		case pickHeld:
			// A shared connection of this process holds the key in a
			// conflicting mode: the server would refuse the try.
			if req.Wait == 0 {
				return nil, true, fmt.Errorf("%w: %q is held", store.ErrNotAcquired, key.String)
			}
			l, err := m.b.waitDedicated(ctx, key, req, start)
			return l, true, err
		}
		l, err := m.try(ctx, c, key, req.Mode)
		if errors.Is(err, errRetry) {
			continue
		}
		if err != nil || l != nil {
			return l, true, err
		}
		if req.Wait == 0 {
			return nil, true, fmt.Errorf("%w: %q is held", store.ErrNotAcquired, key.String)
		}
		l, err = m.b.waitDedicated(ctx, key, req, start)
		return l, true, err
	}
	return nil, false, nil
}

// size is the number of live shared connections (tests).
func (m *muxer) size() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.conns)
}
