package kannuki

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/kannuki-go/kannuki/internal/due"
	"github.com/kannuki-go/kannuki/keys"
	"github.com/kannuki-go/kannuki/store"
)

// Locker takes locks on a Backend. It is safe for concurrent use and holds
// no resources of its own: closing the database pool is the caller's job.
type Locker struct {
	backend store.Backend
	opts    Options
	keys    keys.Scheme
	kcache  *keyCache // nil when keys is not cachable
	hook    Hook
	stats   counters
	queue   localQueue
	// waits holds the attempts to report as waiting after WaitingAfter:
	// one timer for all. Against a runtime timer per call it pays:
	// BenchmarkPairedQueues, WithLock on kannukimem with a hook, 917-982
	// ns a cycle against 1,310-1,486 (1.43-1.51x), -count 5, 2026-12-08.
	waits due.Queue
	// checks holds the held locks due for a keepalive check: no timer per
	// held lock, however many are held (the told-at-once issue's bar).
	checks due.Queue
	slots  atomic.Int64 // Handles counted against Options.MaxHeld
}

// New returns a Locker on b. A nil b yields a Locker whose calls all fail
// with ErrInvalidArgument (never one that "succeeds" without locking).
func New(b store.Backend, opts Options) *Locker {
	l := &Locker{backend: b, opts: opts, keys: opts.Keys}
	l.queue.opts = &l.opts
	l.waits.Fire = waitDue
	l.checks.Fire = checkDue
	if l.keys == nil {
		l.keys = keys.Ruby{}
	}
	if cachable(l.keys) {
		l.kcache = new(keyCache)
	}
	l.hook = Hooks(opts.Hook, slogHookOf(opts.Logger))
	return l
}

// Key derives the Key a string locks, with the Locker's prefix and scheme.
func (l *Locker) Key(key string) (store.Key, error) {
	if l.kcache == nil {
		return l.keys.Derive(l.opts.KeyPrefix, key)
	}
	if k, ok := l.kcache.get(key); ok {
		return k, nil
	}
	k, err := l.keys.Derive(l.opts.KeyPrefix, key)
	if err == nil {
		l.kcache.put(key, k)
	}
	return k, err
}

// WithLock runs fn while holding key. It waits as the strategy and timeout
// say (by default as long as ctx allows). When the lock is not granted it
// returns a *NotAcquiredError (errors.Is(err, ErrNotAcquired)); otherwise
// it returns fn's error. fn's context is canceled if the lock is lost, and
// the call then returns an error matching ErrLockLost.
//
// Re-entrancy: a nested WithLock/TryLock/Lock on the same key and Locker,
// given the context fn received, runs at once without asking the database
// again (a nested shared-to-exclusive upgrade fails with ErrDeadlock). Other
// goroutines wait for the key like for a mutex.
//
// A panic in fn releases the lock and propagates.
func (l *Locker) WithLock(ctx context.Context, key string, fn func(ctx context.Context) error, opts ...CallOption) error {
	_, err := l.run(ctx, key, fn, opts, false)
	return err
}

// TryLock tries once. If key is held elsewhere it returns (false, nil)
// without running fn; otherwise it runs fn and returns (true, fn's error).
// Any other failure is (false, err). Timeout and strategy options are
// ignored: TryLock never waits for the lock.
func (l *Locker) TryLock(ctx context.Context, key string, fn func(ctx context.Context) error, opts ...CallOption) (bool, error) {
	ran, err := l.run(ctx, key, fn, opts, true)
	var na *NotAcquiredError
	if !ran && errors.As(err, &na) && na.Reason == ReasonHeld {
		return false, nil
	}
	return ran, err
}

// Acquire takes key and returns a Handle to release it. It waits like
// WithLock. The Handle's keepalive runs until Release.
func (l *Locker) Acquire(ctx context.Context, key string, opts ...CallOption) (*Handle, error) {
	return l.acquire(ctx, key, opts, false)
}

// Held reports whether anyone holds key now, as the backend sees it
// (for databases: this database only).
func (l *Locker) Held(ctx context.Context, key string) (bool, error) {
	if err := l.usable(ctx); err != nil {
		return false, err
	}
	k, err := l.Key(key)
	if err != nil {
		return false, err
	}
	if err := ctx.Err(); err != nil {
		return false, sayf(err, "kannuki: held %q", k.String)
	}
	held, err := l.backend.Held(ctx, k)
	if err != nil {
		return false, sayf(err, "kannuki: held %q", k.String)
	}
	return held, nil
}

func (l *Locker) usable(ctx context.Context) error {
	switch {
	case l == nil || l.backend == nil:
		return fmt.Errorf("%w: nil Locker or backend", ErrInvalidArgument)
	case ctx == nil:
		return fmt.Errorf("%w: nil context", ErrInvalidArgument)
	}
	return nil
}

// prepare validates a call and derives its key and configuration.
func (l *Locker) prepare(ctx context.Context, key string, opts []CallOption, kind callKind) (store.Key, callConfig, error) {
	if err := l.usable(ctx); err != nil {
		return store.Key{}, callConfig{}, err
	}
	cfg, err := l.config(opts)
	if err != nil {
		return store.Key{}, cfg, err
	}
	if cfg.txOptions != nil && kind != callInTx {
		return store.Key{}, cfg, fmt.Errorf("%w: TxOptions apply to InTx only, which opens the transaction", ErrInvalidArgument)
	}
	if kind == callTry {
		cfg.strategy, cfg.wait = nonBlocking{}, 0
	}
	k, err := l.Key(key)
	return k, cfg, err
}

// tryKind is the callKind of a call that is a single try or not.
func tryKind(try bool) callKind {
	if try {
		return callTry
	}
	return callLock
}

func (l *Locker) run(ctx context.Context, key string, fn func(context.Context) error, opts []CallOption, try bool) (bool, error) {
	if fn == nil {
		return false, fmt.Errorf("%w: nil function", ErrInvalidArgument)
	}
	k, cfg, err := l.prepare(ctx, key, opts, tryKind(try))
	if err != nil {
		return false, err
	}
	if held := heldIn(ctx, l, k.String); held != nil {
		return l.reenter(ctx, held, cfg, fn)
	}
	h, err := l.acquireKey(ctx, k, cfg)
	if err != nil {
		return false, err
	}
	return true, h.run(ctx, fn)
}

func (l *Locker) acquire(ctx context.Context, key string, opts []CallOption, try bool) (*Handle, error) {
	k, cfg, err := l.prepare(ctx, key, opts, tryKind(try))
	if err != nil {
		return nil, err
	}
	h, err := l.acquireKey(ctx, k, cfg)
	if err != nil {
		return nil, err
	}
	h.startKeepalive()
	return h, nil
}

// acquireKey runs the strategy against the backend and reports the outcome.
// The Handle is made first: it is the attempt obtain's strategy calls, so
// the common path needs no closure.
func (l *Locker) acquireKey(ctx context.Context, k store.Key, cfg callConfig) (*Handle, error) {
	h := &Handle{
		l: l, key: k, mode: cfg.mode,
		queued: cfg.mode == store.ModeExclusive && !l.opts.NoLocalQueue,
	}
	if l.opts.MaxHeld > 0 {
		if err := l.takeSlot(ctx, k, cfg); err != nil {
			return nil, err
		}
		h.counted = true
	}
	lease, granted, err := l.obtain(ctx, k, cfg, reportCounted, h, &h.watch)
	if err != nil {
		if h.counted {
			l.slots.Add(-1)
		}
		return nil, l.capacityCount(err)
	}
	h.lease, h.granted, h.ctx = lease, granted, uncancelable(ctx)
	return h, nil
}

// capacityCount adds to a store's ErrCapacity how many locks this Locker
// holds: whether it is the one filling the store.
func (l *Locker) capacityCount(err error) error {
	var na *NotAcquiredError
	if errors.As(err, &na) && na.Reason == ReasonCapacity && na.Err != nil {
		na.Err = fmt.Errorf("%w (this Locker holds %d locks)", na.Err, l.stats.held.Load())
	}
	return err
}

// takeSlot counts a Handle against Options.MaxHeld, or refuses the call
// with ErrCapacity, without asking the backend, when the Locker already
// holds that many locks (or is acquiring them).
func (l *Locker) takeSlot(ctx context.Context, k store.Key, cfg callConfig) error {
	n := l.slots.Add(1)
	if n <= int64(l.opts.MaxHeld) {
		return nil
	}
	l.slots.Add(-1)
	l.emit(ctx, Event{Kind: EventAttempt, Key: k.String, Mode: cfg.mode})
	l.stats.waiting.Add(1)
	return l.failed(ctx, k, cfg, 0, 0, 0, fmt.Errorf("%w: the Locker holds or is acquiring %d locks, its Options.MaxHeld", ErrCapacity, n-1))
}

// attempt asks for the Handle's lock once: through the local queue when
// the Handle takes part in it, else straight from the backend.
func (h *Handle) attempt(ctx context.Context, req store.Request) (store.Lease, error) {
	if !h.queued {
		return h.l.backend.Acquire(ctx, h.key, req)
	}
	return h.l.acquireQueued(ctx, h.key, req)
}

// acquireQueued waits for key's place in the process first, then asks the
// backend with what is left of the wait. The place is kept while the lock
// is held and given up by Handle.Release.
func (l *Locker) acquireQueued(ctx context.Context, k store.Key, req store.Request) (store.Lease, error) {
	var start time.Time
	if req.Wait > 0 {
		start = time.Now()
	}
	lease, err := l.queue.enter(ctx, k.String, req.Wait, req.OnWait)
	if err != nil {
		return nil, err
	}
	if lease != nil {
		if err := ctx.Err(); err != nil { // handed the lock as ctx ended
			l.queue.leave(k.String, lease)
			return nil, err
		}
		l.stats.relocked.Add(1)
		return lease, nil
	}
	if req.Wait > 0 {
		// What the local wait left; 0 still makes one try.
		req.Wait = max(req.Wait-time.Since(start), 0)
	}
	lease, err = l.backend.Acquire(ctx, k, req)
	if err != nil {
		l.queue.leave(k.String, nil)
		return nil, err
	}
	return lease, nil
}

// grantReport says how obtain reports a grant.
type grantReport uint8

const (
	reportCounted   grantReport = iota // a hold starts; a release or loss will end it
	reportUncounted                    // reported, but nothing will end it (LockTx)
	reportNone                         // the caller reports it (InTx, from inside the transaction)
)

// attempter makes one attempt at a lock for obtain's strategy.
type attempter interface {
	attempt(ctx context.Context, req store.Request) (store.Lease, error)
}

// attemptFunc adapts a function to attempter.
type attemptFunc func(ctx context.Context, req store.Request) (store.Lease, error)

func (f attemptFunc) attempt(ctx context.Context, req store.Request) (store.Lease, error) {
	return f(ctx, req)
}

// obtain runs cfg's strategy with a as the single attempt, and reports the
// attempt and its outcome (events, stats). ws is where the call's wait is
// watched while a hook is set. It returns when the lock was granted.
func (l *Locker) obtain(ctx context.Context, k store.Key, cfg callConfig, report grantReport, a attempter, ws *waitWatch) (store.Lease, time.Time, error) {
	l.emit(ctx, Event{Kind: EventAttempt, Key: k.String, Mode: cfg.mode})
	l.stats.waiting.Add(1)
	start := time.Now()
	if err := ctx.Err(); err != nil {
		return nil, start, l.failed(ctx, k, cfg, 0, 0, 0, err)
	}
	w := l.watchWait(ctx, k, cfg, start, ws)
	var lease store.Lease
	var err error
	lastWait := cfg.wait
	switch cfg.strategy.(type) {
	case blocking: // the common strategies need no try function
		lease, err = a.attempt(ctx, store.Request{Mode: cfg.mode, Wait: cfg.wait, OnWait: w.notifier()})
	case nonBlocking:
		lastWait = 0
		lease, err = a.attempt(ctx, store.Request{Mode: cfg.mode})
	default:
		lease, lastWait, err = l.viaStrategy(ctx, cfg, a, w)
	}
	began := w.finish()
	now := time.Now()
	if err != nil {
		return nil, now, l.failed(ctx, k, cfg, lastWait, now.Sub(start), began, err)
	}
	if report != reportNone {
		l.granted(ctx, k, cfg.mode, now.Sub(start), began, report == reportCounted)
	}
	return lease, now, nil
}

// viaStrategy runs a strategy other than the two common ones. It returns
// the wait of the last try, which tells a held lock from a timeout.
func (l *Locker) viaStrategy(ctx context.Context, cfg callConfig, a attempter, w *waitWatch) (store.Lease, time.Duration, error) {
	tries := 0
	lastWait := cfg.wait
	lease, err := cfg.strategy.Acquire(ctx, func(ctx context.Context, wait time.Duration) (store.Lease, error) {
		if tries++; tries > 1 {
			w.NotifyWait() // an earlier try failed: the call is waiting
		}
		lastWait = wait
		req := store.Request{Mode: cfg.mode, Wait: wait}
		if wait != 0 {
			req.OnWait = w.notifier()
		}
		return a.attempt(ctx, req)
	}, cfg.wait)
	if err == nil && lease == nil {
		err = fmt.Errorf("kannuki: %T returned neither a lease nor an error", cfg.strategy)
	}
	return lease, lastWait, err
}

// released reports a lock given back (err: a failed release) after being
// held since granted.
func (l *Locker) released(ctx context.Context, k store.Key, m store.Mode, granted time.Time, err error) {
	hold := time.Since(granted)
	l.stats.ended(hold, false)
	l.emit(ctx, Event{Kind: EventReleased, Key: k.String, Mode: m, Hold: hold, Err: err})
}

// granted reports a grant after acquiring for wait; began is when the call
// reported waiting (0: it did not).
func (l *Locker) granted(ctx context.Context, k store.Key, m store.Mode, wait, began time.Duration, counted bool) {
	l.stats.granted(wait, counted)
	l.emit(ctx, Event{Kind: EventAcquired, Key: k.String, Mode: m, Wait: wait, WaitBegan: began})
}

// failed turns a strategy or backend error into the error the caller sees
// and emits EventNotAcquired.
func (l *Locker) failed(ctx context.Context, k store.Key, cfg callConfig, lastWait, waited, began time.Duration, err error) error {
	err = innermost(err)
	reason := ReasonError
	switch {
	case errors.Is(err, ErrPoolExhausted):
		reason = ReasonPoolExhausted
	case errors.Is(err, ErrCapacity):
		reason = ReasonCapacity
	case errors.Is(err, errRetriesExhausted):
		reason = ReasonRetriesExhausted
	case errors.Is(err, ErrNotAcquired) && lastWait == 0:
		reason = ReasonHeld
	case errors.Is(err, ErrNotAcquired), errors.Is(err, context.DeadlineExceeded):
		reason = ReasonTimeout
	case errors.Is(err, context.Canceled):
		reason = ReasonCanceled
	case errors.Is(err, ErrDeadlock):
		reason = ReasonDeadlock
	}
	l.stats.refused(reason)
	l.emit(ctx, Event{Kind: EventNotAcquired, Key: k.String, Mode: cfg.mode, Wait: waited, WaitBegan: began, Reason: reason, Err: err})
	switch {
	case reason != ReasonError:
		if err == ErrNotAcquired { //nolint:errorlint // only the bare sentinel says nothing more
			err = nil
		}
		return &NotAcquiredError{Key: k.String, Reason: reason, Waited: waited, Err: err}
	case errors.Is(err, ErrInvalidKey), errors.Is(err, ErrUnsupported), errors.Is(err, ErrInvalidArgument):
		return err
	}
	return sayf(err, "kannuki: acquire %q", k.String)
}
