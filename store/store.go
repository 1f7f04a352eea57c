package store

import (
	"context"
	"time"
)

// Mode is exclusive (writer) or shared (reader).
type Mode uint8

const (
	// ModeExclusive admits one holder at a time. The default.
	ModeExclusive Mode = iota
	// ModeShared admits many shared holders at once and excludes exclusive
	// ones. Only where the database has it (PostgreSQL, file, memory).
	ModeShared
)

func (m Mode) String() string {
	if m == ModeShared {
		return "shared"
	}
	return "exclusive"
}

// WaitForever, as Request.Wait, waits until the lock is granted or the
// context ends.
const WaitForever time.Duration = -1

// Request is one acquisition asked of a Backend.
type Request struct {
	Mode Mode
	// Wait is WaitForever (any negative value), 0 for a single try, or the
	// longest time to wait. The context's deadline bounds it too.
	Wait time.Duration
	// OnWait, when not nil, is to be told (OnWait.NotifyWait) on the
	// goroutine that called Acquire when the backend finds the lock held
	// and starts to wait for it (never for a single try). Backends that
	// wait inside one database statement cannot tell a wait from a slow
	// grant and need not tell; the Locker then reports the wait after
	// Options.WaitingAfter.
	OnWait WaitNotifier
	// TxOptions are the options of the transaction TxRunner.RunTx opens
	// (the TxOptions call option of InTx), in the type the backend's begin
	// takes; nil means the driver's defaults. A value of another type is
	// an error matching ErrInvalidArgument. Acquire ignores it.
	TxOptions any
}

// WaitNotifier is told when a backend starts to wait for a lock it found
// held (see Request.OnWait).
type WaitNotifier interface {
	// NotifyWait is cheap, never blocks, and ignores calls after the first.
	NotifyWait()
}

// Backend is the contract a lock store implements. The Locker adds keys,
// strategies, re-entrancy, keepalive and events on top; a Backend only takes
// and gives back one lock at a time. Backends must be safe for concurrent use.
//
// Optional abilities are found by interface assertion: Lister (listing held
// and waiting locks), Checker on a Lease (keepalive), LossWatcher on a Lease
// (a loss told as soon as the backend knows of it), Relocker on a Lease
// (handoff inside the process in one round trip), and io.Closer.
// A backend without shared locks returns an error matching ErrUnsupported
// from Acquire with Mode ModeShared.
//
// The package backendtest holds the conformance suite every Backend must pass.
type Backend interface {
	// Acquire takes key in req.Mode and waits as req.Wait says, without
	// polling where the store can wait itself.
	//
	// On success the lock is held until Lease.Release. When the lock is not
	// granted (held on a try, wait ran out) Acquire returns an error matching
	// ErrNotAcquired. When ctx ends first it returns an error matching
	// ctx.Err(). On any error nothing may remain held: a grant that raced a
	// cancellation must be undone before Acquire returns. Deadlocks match
	// ErrDeadlock. When no pooled connection came free in time the error
	// matches ErrPoolExhausted (and may also match ErrNotAcquired); the
	// Locker then reports ReasonPoolExhausted, never "held".
	Acquire(ctx context.Context, key Key, req Request) (Lease, error)

	// Held reports whether anyone (this process included) holds key in any
	// mode, as the store sees it now.
	Held(ctx context.Context, key Key) (bool, error)
}

// Lease is one held lock.
type Lease interface {
	// Release gives the lock back. It must work when ctx is already
	// canceled (bounded by the backend's own timeout) and must never leave
	// the lock held on a connection that goes back to a pool: when in doubt
	// it destroys the connection. If the lock turns out not to have been
	// held any more, Release returns an error matching ErrLockLost.
	// Release is called at most once by the Locker.
	Release(ctx context.Context) error
}

// Checker is implemented by leases that can tell whether their lock is still
// held (a keepalive round trip on the holding connection). The Locker calls
// Check every Options.KeepaliveInterval while the lock is held, never
// concurrently with Release. An error means the lock is, or may be, lost.
type Checker interface {
	Check(ctx context.Context) error
}

// LossWatcher is implemented by leases whose backend can learn that the
// lock is lost between keepalive checks: a connection the backend itself
// destroyed (its state in doubt, a failed statement of another lease on a
// shared connection), or a held connection's socket that turned readable
// while no statement ran on it (the server ended the session). The Locker
// calls WatchLoss once, after the grant, before fn runs.
//
// The lease calls l.LockLost at most once, on any goroutine, as soon as the
// backend knows the lock is lost or may be, and before the call that found
// out returns; when the loss was known before WatchLoss, WatchLoss calls it
// at once. Once Release (or Relock) returns, the lease never calls it.
// LockLost never calls back into the lease, so a backend may call it with
// its own locks held; it runs the Locker's hook for EventLost.
type LossWatcher interface {
	WatchLoss(l LossListener)
}

// LossListener is told of a lost lock by a LossWatcher. The Locker's
// listener cancels fn's context with an error matching ErrLockLost, closes
// Handle.Lost, and reports EventLost.
type LossListener interface {
	LockLost(cause error)
}

// Relocker is implemented by leases that can give their lock back and try
// to take it again at once, on the same session, in one round trip: the
// Locker uses it to hand a key to the next goroutine of its local queue
// without a second round trip for that goroutine's try.
//
// Relock must release exactly as Release does and return what Release
// would return. Only when that release succeeded does it then try once,
// without waiting, to take the lock again in the lease's mode; next is the
// new lease when the try got the lock, else nil. The store must give the
// released lock to any other session already waiting for it before the
// try runs (PostgreSQL and MariaDB grant a released lock to the next
// waiter at once), so that other processes are not starved: the try then
// finds it held and next is nil. Like Release, Relock works on a canceled
// ctx and is called at most once, instead of Release.
type Relocker interface {
	Relock(ctx context.Context) (next Lease, err error)
}

// Lister is implemented by backends that can list locks, for introspection
// and the CLI.
type Lister interface {
	Locks(ctx context.Context) ([]LockInfo, error)
}

// LockInfo describes one held or awaited lock as the store reports it.
// Fields the store cannot tell are zero.
type LockInfo struct {
	Name        string    // readable name, where the store knows it (lock name, SQL comment)
	ID          int64     // PostgreSQL bigint id, when applicable
	Mode        Mode      // exclusive or shared
	Granted     bool      // true: held; false: waiting
	PID         int64     // database session or OS process id
	Application string    // application_name or program, where known
	Client      string    // client address, where known
	Since       time.Time // when the session began waiting or holding, where known
}
