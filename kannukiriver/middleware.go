package kannukiriver

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"

	"github.com/kannuki-go/kannuki"
	"github.com/kannuki-go/kannuki/kannukijob"
)

// OnConflict says what the middleware does with a job whose duplicate (same
// kind, same key arguments) is running.
type OnConflict uint8

const (
	// Skip completes the job without running it (the default). River records
	// it as completed with an Output (see SkipOutput); the Locker's hooks
	// receive a kannuki.EventSkipped event.
	Skip OnConflict = iota
	// Snooze returns river.JobSnooze(Options.SnoozeAfter): River runs the job
	// again after that delay without counting an attempt, so every duplicate
	// runs eventually, one at a time.
	Snooze
	// Cancel returns river.JobCancel with an error matching
	// kannukijob.ErrDuplicate: River marks the job cancelled and keeps the
	// error in the job's errors, where a dashboard shows it. No event is
	// emitted beyond the Locker's EventNotAcquired.
	Cancel
)

// DefaultSnoozeAfter is the snooze delay used when Options.SnoozeAfter is 0.
const DefaultSnoozeAfter = 10 * time.Second

// Options configure a Middleware. The zero value guards every kind and
// skips duplicates.
type Options struct {
	// OnConflict is what happens to a job whose duplicate is running.
	OnConflict OnConflict
	// SnoozeAfter is the delay of OnConflict Snooze. 0 means
	// DefaultSnoozeAfter.
	SnoozeAfter time.Duration
	// Kinds, when not empty, is the allow-list of job kinds to guard; jobs
	// of other kinds run untouched. Empty guards every kind.
	Kinds []string
	// KeyArgs, when set, returns the value that identifies duplicates of a
	// job within its kind, for example only a customer id out of larger
	// arguments. The lock key is then the job's kind plus the canonical JSON
	// of that value. nil uses the job's whole encoded arguments. An error
	// fails the job's attempt (River retries it).
	KeyArgs func(job *rivertype.JobRow) (any, error)
}

// Middleware is a River worker middleware that lets only one job with the
// same kind and arguments run at a time, across every River client that
// uses a Locker on the same lock backend. Install it for all workers through
// river.Config.Middleware, or for one worker by returning it from that
// worker's Middleware method.
//
// The lock is taken with one try (no waiting) before the worker runs and
// released when it returns; the worker's context is cancelled if the lock is
// lost, and the attempt then fails with an error matching
// kannuki.ErrLockLost, so River retries it. A failure of the lock backend
// also fails the attempt.
type Middleware struct {
	river.MiddlewareDefaults

	guard kannukijob.Guard
	opts  Options
	kinds map[string]bool
}

var _ rivertype.WorkerMiddleware = (*Middleware)(nil)

// New returns a Middleware taking its locks with l.
//
// With a database backend each running job holds one lock, and so one
// connection of the lock backend's pool, for as long as it runs: give the
// Locker its own pool, larger than the number of jobs that run at once, not
// River's pool. A busy pool must not be mistaken for a running duplicate.
func New(l *kannuki.Locker, opts Options) *Middleware {
	m := &Middleware{opts: opts}
	m.guard = kannukijob.Guard{Locker: l, OnConflict: kannukijob.Skip}
	if opts.OnConflict == Snooze || opts.OnConflict == Cancel {
		m.guard.OnConflict = kannukijob.RetryLater
		m.guard.RetryAfter = opts.snoozeAfter()
	}
	if len(opts.Kinds) > 0 {
		m.kinds = make(map[string]bool, len(opts.Kinds))
		for _, k := range opts.Kinds {
			m.kinds[k] = true
		}
	}
	return m
}

func (o Options) snoozeAfter() time.Duration {
	if o.SnoozeAfter > 0 {
		return o.SnoozeAfter
	}
	return DefaultSnoozeAfter
}

// Guards reports whether jobs of kind are guarded.
func (m *Middleware) Guards(kind string) bool {
	return m.kinds == nil || m.kinds[kind]
}

// Work implements rivertype.WorkerMiddleware.
func (m *Middleware) Work(ctx context.Context, job *rivertype.JobRow, doInner func(context.Context) error) error {
	if job == nil || !m.Guards(job.Kind) {
		return doInner(ctx)
	}
	if m.opts.OnConflict > Cancel {
		return fmt.Errorf("%w: kannukiriver: unknown OnConflict %d", kannuki.ErrInvalidArgument, m.opts.OnConflict)
	}
	args, err := m.keyArgs(job)
	if err != nil {
		return err
	}
	outcome, err := m.guard.Run(ctx, job.Kind, args, doInner)
	switch outcome {
	case kannukijob.Skipped:
		key, _ := kannukijob.Key(job.Kind, args)
		// Best effort: the event already reported the skip, and RecordOutput
		// only fails outside a River worker (a direct call in a test).
		_ = river.RecordOutput(ctx, SkipOutput{Skipped: true, Key: key})
		return nil
	case kannukijob.Deferred:
		if m.opts.OnConflict == Cancel {
			return river.JobCancel(duplicate(err))
		}
		return river.JobSnooze(m.opts.snoozeAfter())
	}
	return err
}

// keyArgs returns the value whose canonical JSON identifies the job.
func (m *Middleware) keyArgs(job *rivertype.JobRow) (any, error) {
	if m.opts.KeyArgs == nil {
		return canonicalArgs(job.EncodedArgs)
	}
	v, err := m.opts.KeyArgs(job)
	if err != nil {
		return nil, fmt.Errorf("kannuki: key arguments of %s job %d: %w", job.Kind, job.ID, err)
	}
	return canonicalValue(v)
}

// duplicate turns the guard's RetryLaterError into the error a cancelled
// job keeps: it matches kannukijob.ErrDuplicate and names the key.
func duplicate(err error) error {
	var rl *kannukijob.RetryLaterError
	if errors.As(err, &rl) {
		return fmt.Errorf("%w: %q", kannukijob.ErrDuplicate, rl.Key)
	}
	return kannukijob.ErrDuplicate
}
