package kannukimysql

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"github.com/kannuki-go/kannuki/store"

	"github.com/kannuki-go/kannuki/internal/due"
	"github.com/kannuki-go/kannuki/internal/sockwatch"
)

// Default values used when the corresponding Options field is zero.
const (
	DefaultReleaseTimeout = 5 * time.Second
	DefaultConnWait       = time.Second
	DefaultMaxServerWait  = time.Hour
)

// Options configure a Backend. The zero value is ready to use.
type Options struct {
	// ReleaseTimeout bounds every statement the Backend runs to completion
	// whatever the caller's context says: the first try, RELEASE_LOCK in
	// Release (which must work with a canceled context), the keepalive
	// check, and the clean-up after a canceled wait. A statement that does
	// not answer in time has its session ended with KILL from another
	// connection (see the package documentation, "Round trips"). 0 means
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

	// MaxServerWait is the longest single GET_LOCK wait sent to the server.
	// Longer waits, and waits forever, are a loop of such statements. Keep
	// it below the readTimeout of the DSN, if the DSN sets one: the driver
	// would otherwise give up on a wait that is going well. 0 means
	// DefaultMaxServerWait.
	MaxServerWait time.Duration

	// DisablePrepared sends every statement as text with the name as a hex
	// literal, instead of preparing the fast-path statements once per
	// connection. Use it behind proxies that mishandle server-side prepared
	// statements. It costs some throughput (see the package documentation),
	// never an extra round trip.
	DisablePrepared bool

	// WholeSecondTimeouts sends GET_LOCK timeouts in whole seconds, rounded
	// up, and ends sub-second waits from the client (by ending the waiting
	// session). It is what the Backend does by itself on MySQL, whose
	// GET_LOCK truncates a fractional timeout; MariaDB takes microseconds.
	// Set it for servers that truncate but do not say "MariaDB" in VERSION().
	WholeSecondTimeouts bool

	// Dialer, when the pool's driver dials through it (see Dialer), lets
	// the Backend watch the socket of every connection that holds a lock
	// for a Locker: the moment the server ends the session (KILL, a
	// shutdown, a restart) the Locker is told the lock is lost, instead of
	// at its next keepalive check. nil: no watch (see "Socket watch" in
	// the package documentation).
	Dialer *Dialer

	// NoWatch turns the socket watch off; a lost lock is then found by
	// the keepalive or the release.
	NoWatch bool
}

// Server flavours, learned from VERSION() on a connection's first use.
const (
	flavorUnknown int32 = iota
	flavorMariaDB
	flavorMySQL
)

// deadlineGrace is how long a wait whose server-side timeout is the
// context's deadline may run past that deadline before the client ends it
// itself: the server normally answers first, so no session is ended.
const deadlineGrace = 250 * time.Millisecond

// Backend is the MySQL / MariaDB lock store over a *sql.DB, with GET_LOCK.
// It implements store.Backend and store.Lister; its leases implement
// store.Checker, store.Relocker and store.LossWatcher. It is safe for concurrent use. It does not own db:
// closing the pool is the caller's job (after every lease is released).
type Backend struct {
	db     *sql.DB
	opts   Options
	cache  sessions
	flavor atomic.Int32
	dogs   due.Queue // statements' watchdogs (wait.go)
	// connDog bounds a pool request by ConnWait: one timer for all of
	// them instead of a runtime timer each (see conn). With dogs, against
	// a runtime timer per statement they pay at most a little:
	// BenchmarkPairedTimers, time per cycle with timers / with the queues,
	// 0.993-1.012 (median 1.005), -count 5, 2026-12-08.
	connDog due.Queue
	// poller watches the sockets of held connections (watch.go).
	poller sockwatch.Poller
}

var (
	_ store.Backend     = (*Backend)(nil)
	_ store.Lister      = (*Backend)(nil)
	_ store.Checker     = (*lease)(nil)
	_ store.Relocker    = (*lease)(nil)
	_ store.LossWatcher = (*lease)(nil)
)

// New returns a Backend on db, a pool opened with a MySQL driver for
// database/sql (github.com/go-sql-driver/mysql; any DSN: with or without
// interpolateParams). Every held lock pins one connection of db until it
// is released; a wait pins one too.
func New(db *sql.DB, opts Options) *Backend {
	if opts.ReleaseTimeout <= 0 {
		opts.ReleaseTimeout = DefaultReleaseTimeout
	}
	if opts.ConnWait <= 0 {
		opts.ConnWait = DefaultConnWait
	}
	if opts.MaxServerWait <= 0 {
		opts.MaxServerWait = DefaultMaxServerWait
	}
	b := &Backend{db: db, opts: opts}
	b.dogs.Fire = watchdogFired
	b.connDog.Fire = due.FireCancel
	return b
}

// noteVersion records the server's flavour from VERSION().
func (b *Backend) noteVersion(v string) {
	if b.flavor.Load() != flavorUnknown || v == "" {
		return
	}
	f := flavorMySQL
	if strings.Contains(strings.ToLower(v), "mariadb") {
		f = flavorMariaDB
	}
	b.flavor.CompareAndSwap(flavorUnknown, f)
}

// wholeSeconds reports whether GET_LOCK timeouts must be whole seconds.
func (b *Backend) wholeSeconds() bool {
	return b.opts.WholeSecondTimeouts || b.flavor.Load() != flavorMariaDB
}

// Acquire implements store.Backend. It takes a connection from the pool
// and tries once (one round trip). If the lock is held and req.Wait allows,
// it waits on the server: one GET_LOCK statement per Options.MaxServerWait,
// no polling. See the package documentation for cancellation and the pool.
func (b *Backend) Acquire(ctx context.Context, key store.Key, req store.Request) (store.Lease, error) {
	switch {
	case b == nil || b.db == nil:
		return nil, fmt.Errorf("%w: kannukimysql: nil Backend or *sql.DB", store.ErrInvalidArgument)
	case ctx == nil:
		return nil, fmt.Errorf("%w: kannukimysql: nil context", store.ErrInvalidArgument)
	case req.Mode == store.ModeShared:
		return nil, fmt.Errorf("%w: MySQL and MariaDB have no shared (reader) locks: GET_LOCK is exclusive only; "+
			"take the lock exclusively, or use PostgreSQL (kannukipg) for reader locks", store.ErrUnsupported)
	case req.Mode != store.ModeExclusive:
		return nil, fmt.Errorf("%w: kannukimysql: unknown lock mode %d", store.ErrInvalidArgument, req.Mode)
	}
	name, err := lockName(key)
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	start := time.Now()
	var l *lease
	var ok bool
	for attempt := 1; ; attempt++ {
		conn, err := b.conn(ctx, req.Wait)
		if err != nil {
			return nil, err
		}
		l = &lease{b: b, key: key, name: name, conn: conn}
		ok, err = l.try(ctx)
		if err == nil {
			break
		}
		if errors.Is(err, errDeadOnArrival) && attempt < 3 && ctxDone(ctx) == nil {
			// database/sql handed out a connection that was already
			// closed (go-sql-driver/mysql closes a new connection whose
			// dial context ends just as the dial completes); no lock
			// statement ran: take another.
			continue
		}
		return nil, err
	}
	if ok {
		return l, nil
	}
	if req.Wait == 0 {
		l.putBack()
		return nil, fmt.Errorf("held by another session: %w", store.ErrNotAcquired)
	}
	var end time.Time
	if req.Wait > 0 {
		end = start.Add(req.Wait)
	}
	if err := l.wait(ctx, end, req.Wait); err != nil {
		return nil, err
	}
	return l, nil
}

// conn takes a connection from the pool, bounded as Options.ConnWait says.
// A try, and a wait no longer than ConnWait, are bounded through connDog
// rather than a context with a timeout: a runtime timer added and stopped
// on every call is a cost the uncontended cycle would feel.
func (b *Backend) conn(ctx context.Context, wait time.Duration) (*sql.Conn, error) {
	busy, n := poolBusy(b.db)
	if busy && wait == 0 {
		// A try does not wait for a connection another caller holds.
		return nil, fmt.Errorf("%w: all %d connections in use (each held or awaited lock pins a connection; is the pool's MaxOpenConns large enough?): %w",
			ErrNoConnection, n, store.ErrNotAcquired)
	}
	var conn *sql.Conn
	var err error
	expired := false                    // our bound ran out
	bound := max(wait, b.opts.ConnWait) // a dial or a driver check gets ConnWait
	if busy {
		bound = wait // waiting for another caller's connection spends the budget
	}
	switch {
	case wait < 0:
		conn, err = b.db.Conn(ctx)
	case bound == b.opts.ConnWait:
		cctx, limit := due.WithCancel(&b.connDog, ctx, time.Now().Add(bound))
		conn, err = b.db.Conn(cctx)
		expired = limit.Stop(&b.connDog)
	default:
		cctx, cancel := context.WithTimeout(ctx, bound)
		conn, err = b.db.Conn(cctx)
		expired = ctxDone(cctx) != nil
		cancel()
	}
	if err == nil {
		return conn, nil
	}
	if cerr := ctxDone(ctx); cerr != nil {
		return nil, cerr
	}
	if cerr := capacityErr(err); cerr != nil {
		return nil, cerr
	}
	if expired {
		st := b.db.Stats()
		return nil, fmt.Errorf("%w within %s (%d of %d in use; each held or awaited lock pins a connection; is the pool's MaxOpenConns large enough?): %w",
			ErrNoConnection, bound, st.InUse, st.MaxOpenConnections, store.ErrNotAcquired)
	}
	return nil, fmt.Errorf("get connection: %w", err)
}

// poolBusy reports whether db has no connection to give at once (none
// idle, no room to dial one) and its MaxOpenConns.
func poolBusy(db *sql.DB) (bool, int) {
	st := db.Stats()
	return st.MaxOpenConnections > 0 && st.Idle == 0 && st.OpenConnections >= st.MaxOpenConnections, st.MaxOpenConnections
}

// ctxDone is ctx.Err(), or DeadlineExceeded once ctx's deadline has
// passed even if its timer has not fired yet: a driver bounded by the
// deadline (a dial, a socket deadline) may fail a hair before ctx.Err()
// says so, and the caller must see the context's error, not the driver's.
func ctxDone(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if dl, ok := ctx.Deadline(); ok && !time.Now().Before(dl) {
		return context.DeadlineExceeded
	}
	return nil
}

// Held implements store.Backend: whether any session holds key's name,
// with IS_USED_LOCK (one round trip on a pooled connection).
func (b *Backend) Held(ctx context.Context, key store.Key) (bool, error) {
	if b == nil || b.db == nil {
		return false, fmt.Errorf("%w: kannukimysql: nil Backend or *sql.DB", store.ErrInvalidArgument)
	}
	name, err := lockName(key)
	if err != nil {
		return false, err
	}
	var held bool
	if err := b.db.QueryRowContext(ctx, heldStmt(name)).Scan(&held); err != nil {
		return false, err
	}
	return held, nil
}
