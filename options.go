package kannuki

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/kannuki-go/kannuki/keys"
	"github.com/kannuki-go/kannuki/store"
)

// defaultKeepaliveInterval is Options.KeepaliveInterval's zero value.
const defaultKeepaliveInterval = 5 * time.Second

// Options configure a Locker. The zero value is ready to use: Ruby-compatible
// keys, no prefix, waiting on the server as long as the context
// allows, a keepalive every 5 s, no events.
type Options struct {
	// KeyPrefix is joined to every key as "prefix/key". Empty means none.
	KeyPrefix string
	// Keys derives database ids from keys. nil means RubyKeys{}.
	Keys keys.Scheme
	// DefaultTimeout bounds the wait of calls that set no Timeout:
	// 0 waits as long as the context allows, > 0 waits up to that long.
	// Negative values are invalid: calls then fail with ErrInvalidArgument.
	DefaultTimeout time.Duration
	// Strategy is the default strategy. nil waits on the server (the
	// database queues the caller; no polling); see Retry for the other.
	Strategy Strategy
	// KeepaliveInterval is how often a held lock's connection is checked,
	// which bounds how long a lost lock goes unnoticed. 0 means
	// 5 s; negative disables the keepalive.
	KeepaliveInterval time.Duration
	// ReleaseTimeout bounds a release, which runs even when the caller's
	// context is already canceled, with a context deadline. 0 leaves the
	// bound to the backend: every Kannuki backend bounds its own release
	// (store.DefaultReleaseTimeout, 5 s, unless configured) and runs fastest with a
	// context that cannot be canceled.
	ReleaseTimeout time.Duration
	// Hook receives lock events. nil costs nothing.
	Hook Hook
	// Logger, when set, logs events through slog: debug for attempts,
	// waits, grants and releases, info for locks not acquired, warn for
	// lost locks and deadlocks, with the key as the "key" attribute. nil is
	// silent.
	Logger *slog.Logger
	// NoLocalQueue turns off in-process queueing. By default, goroutines of
	// one Locker that want the same key exclusively queue in the process,
	// first come first served, and only the first of them holds or waits
	// for the key in the database: many local waiters cost one database
	// connection, and a one-try call fails at once, without a round trip,
	// while another goroutine of the Locker holds or awaits the key. When
	// the holder's lease is a Relocker, its release and the next local
	// goroutine's try are one round trip.
	NoLocalQueue bool
	// MaxHeld bounds the locks held at once through this Locker by WithLock,
	// Lock, TryLock and Acquire (re-entrant calls are not counted, nor are
	// transaction-scoped locks): a call past it fails at once, without
	// asking the backend, with a *NotAcquiredError matching ErrCapacity
	// (Reason ReasonCapacity). Locks being acquired count too, so the bound
	// holds under concurrency. It keeps one process from filling a lock
	// table that other applications share (PostgreSQL's shared lock table:
	// see the README's Limits). 0 means no bound; negative is invalid.
	MaxHeld int
	// WaitingAfter is how long an attempt may run without an answer before
	// the Locker reports EventWaiting for it, for backends that wait inside
	// one database statement and so cannot say when a wait begins (the
	// PostgreSQL and MySQL backends). Backends that can tell (memory, file)
	// and the local queue report a wait as it begins. 0 means
	// 5 ms; negative reports only the waits that are told.
	// It matters only when a Hook or Logger is set.
	WaitingAfter time.Duration
}

// callConfig is the per-call state built from Options and CallOptions.
type callConfig struct {
	wait      time.Duration // WaitForever, 0 or > 0
	strategy  Strategy
	mode      store.Mode
	txOptions any // InTx only
	err       error
}

// callKind says which API a call came through, for the options that only
// some of them take.
type callKind uint8

const (
	callLock callKind = iota // WithLock, Lock, Acquire, LockTx
	callTry                  // TryLock: a single try whatever the options say
	callInTx                 // InTx: TxOptions apply
)

// CallOption adjusts one call (WithLock, TryLock, Lock, Acquire).
type CallOption func(*callConfig)

// Timeout bounds this call's wait: d > 0 waits up to d, 0 tries once.
// A negative d makes the call fail with ErrInvalidArgument. The context's
// deadline bounds the wait too, whichever ends first.
func Timeout(d time.Duration) CallOption {
	return func(c *callConfig) {
		if d < 0 {
			c.err = fmt.Errorf("%w: negative timeout %s (use NoTimeout to wait without a bound)", ErrInvalidArgument, d)
			return
		}
		c.wait = d
	}
}

// NoTimeout makes this call wait until the lock is granted or its context
// ends, whatever Options.DefaultTimeout says.
func NoTimeout() CallOption {
	return func(c *callConfig) { c.wait = store.WaitForever }
}

// Shared asks for a shared (reader) lock: many shared holders at once,
// excluding exclusive holders. Backends without shared locks return an error
// matching ErrUnsupported.
func Shared() CallOption {
	return func(c *callConfig) { c.mode = store.ModeShared }
}

// TxOptions sets the options of the transaction that InTx opens, such as
// its isolation level or read-only mode, in the type the backend's begin
// takes: *sql.TxOptions (or sql.TxOptions) for kannukipg and kannukimysql,
// pgx.TxOptions for kannukipgxv5. nil keeps the driver's defaults. InTx
// fails with ErrInvalidArgument, without running fn, when the backend takes
// another type; so does any other call given TxOptions, which has no
// transaction to apply them to (LockTx locks inside the caller's).
func TxOptions(opts any) CallOption {
	return func(c *callConfig) { c.txOptions = opts }
}

// WithStrategy uses s for this call instead of Options.Strategy.
func WithStrategy(s Strategy) CallOption {
	return func(c *callConfig) {
		if s == nil {
			c.err = fmt.Errorf("%w: nil strategy", ErrInvalidArgument)
			return
		}
		c.strategy = s
	}
}

// config resolves the defaults and the call's options.
func (l *Locker) config(opts []CallOption) (callConfig, error) {
	c := callConfig{wait: store.WaitForever, strategy: l.opts.Strategy}
	switch {
	case l.opts.DefaultTimeout < 0:
		return c, fmt.Errorf("%w: negative Options.DefaultTimeout %s", ErrInvalidArgument, l.opts.DefaultTimeout)
	case l.opts.MaxHeld < 0:
		return c, fmt.Errorf("%w: negative Options.MaxHeld %d", ErrInvalidArgument, l.opts.MaxHeld)
	case l.opts.DefaultTimeout > 0:
		c.wait = l.opts.DefaultTimeout
	}
	if c.strategy == nil {
		c.strategy = blocking{}
	}
	if len(opts) > 0 {
		var err error
		if c, err = applyOptions(c, opts); err != nil {
			return c, err
		}
	}
	if r, ok := c.strategy.(Retry); ok {
		return c, r.check()
	}
	return c, nil
}

// applyOptions applies opts to a copy of c; kept apart so that a call
// without options does not move its configuration to the heap.
func applyOptions(c callConfig, opts []CallOption) (callConfig, error) {
	p := &c
	for _, o := range opts {
		if o != nil {
			o(p)
		}
	}
	return c, c.err
}

func (o Options) waitingAfter() time.Duration {
	if o.WaitingAfter == 0 {
		return defaultWaitingAfter
	}
	return o.WaitingAfter
}

func (o Options) keepalive() time.Duration {
	if o.KeepaliveInterval == 0 {
		return defaultKeepaliveInterval
	}
	return o.KeepaliveInterval
}

// releaseContext is the context a release runs with: ctx's values, never
// ctx's cancellation, and Options.ReleaseTimeout if set.
func (o Options) releaseContext(ctx context.Context) (context.Context, context.CancelFunc) {
	ctx = uncancelable(ctx)
	if o.ReleaseTimeout <= 0 {
		return ctx, noCancel
	}
	return context.WithTimeout(ctx, o.ReleaseTimeout)
}

func noCancel() {}

// uncancelable is context.WithoutCancel, skipped (no allocation) for a
// context that can never be canceled anyway.
func uncancelable(ctx context.Context) context.Context {
	if ctx.Done() == nil {
		return ctx
	}
	return context.WithoutCancel(ctx)
}
