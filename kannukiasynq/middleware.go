package kannukiasynq

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/hibiken/asynq"

	"github.com/kannuki-go/kannuki"
	"github.com/kannuki-go/kannuki/kannukijob"
)

// OnConflict says what the middleware does with a task whose duplicate
// (same type, same key payload) is running.
type OnConflict uint8

const (
	// Skip completes the task without running its handler (the default):
	// the middleware returns nil. The Locker's hooks receive a
	// kannuki.EventSkipped event, and the task's result is a SkipResult
	// (kept where the task was enqueued with asynq.Retention).
	Skip OnConflict = iota
	// RetryLater returns a *kannukijob.RetryLaterError, so asynq retries
	// the task. Install RetryDelay and IsFailure in asynq.Config so that the
	// retry comes after Options.RetryAfter and is not counted against the
	// task's MaxRetry; without them asynq uses its own backoff and counts
	// every deferral as a failed attempt. asynq keeps retry times in whole
	// seconds (truncated), so a retry may come up to a second early.
	RetryLater
)

// DefaultRetryAfter is the delay of RetryLater when Options.RetryAfter is 0.
const DefaultRetryAfter = 10 * time.Second

// Options configure the middleware. The zero value guards every task type
// and skips duplicates.
type Options struct {
	// OnConflict is what happens to a task whose duplicate is running.
	OnConflict OnConflict
	// RetryAfter is the delay RetryLater asks for. 0 means DefaultRetryAfter.
	// asynq's retry times have a resolution of one second.
	RetryAfter time.Duration
	// Types, when not empty, is the allow-list of task types to guard;
	// tasks of other types run untouched. Empty guards every type.
	Types []string
	// KeyPayload, when set, returns the value that identifies duplicates
	// of a task within its type, for example one field of its payload. The
	// lock key is then the task type plus the canonical JSON of that value.
	// nil uses the whole payload (see Key). An error fails the task's
	// attempt, and asynq retries it.
	KeyPayload func(t *asynq.Task) (any, error)
}

// Middleware returns asynq middleware that lets only one task with the same
// type and payload run at a time, across every asynq server whose Locker
// uses the same lock backend. Install it with ServeMux.Use.
//
// The lock is taken with one try (no waiting) before the handler runs and
// released when it returns. The handler's context is cancelled if the lock
// is lost, and the task then fails with an error matching
// kannuki.ErrLockLost, so asynq retries it. A failure of the lock backend
// also fails the attempt.
//
// With a database backend each running task holds one lock, and so one
// connection of the backend's pool, until its handler returns: size that
// pool above the server's Concurrency, so that a busy pool is never taken
// for a running duplicate.
func Middleware(l *kannuki.Locker, opts Options) asynq.MiddlewareFunc {
	g := kannukijob.Guard{Locker: l, OnConflict: kannukijob.Skip}
	if opts.OnConflict == RetryLater {
		g.OnConflict = kannukijob.RetryLater
		g.RetryAfter = opts.RetryAfter
		if g.RetryAfter <= 0 {
			g.RetryAfter = DefaultRetryAfter
		}
	}
	var types map[string]bool
	if len(opts.Types) > 0 {
		types = make(map[string]bool, len(opts.Types))
		for _, typ := range opts.Types {
			types[typ] = true
		}
	}
	return func(next asynq.Handler) asynq.Handler {
		return asynq.HandlerFunc(func(ctx context.Context, t *asynq.Task) error {
			if t == nil || (types != nil && !types[t.Type()]) {
				return next.ProcessTask(ctx, t)
			}
			if opts.OnConflict > RetryLater {
				return fmt.Errorf("%w: kannukiasynq: unknown OnConflict %d", kannuki.ErrInvalidArgument, opts.OnConflict)
			}
			payload, err := keyPayload(opts, t)
			if err != nil {
				return err
			}
			outcome, err := g.Run(ctx, t.Type(), payload, func(ctx context.Context) error {
				return next.ProcessTask(ctx, t)
			})
			if outcome == kannukijob.Skipped {
				writeSkipResult(t, payload)
				return nil
			}
			return err // the handler's error, a RetryLaterError, or a lock failure
		})
	}
}

// keyPayload returns the value whose canonical JSON identifies the task.
func keyPayload(opts Options, t *asynq.Task) (any, error) {
	if opts.KeyPayload == nil {
		return canonicalPayload(t.Payload()), nil
	}
	v, err := opts.KeyPayload(t)
	if err != nil {
		return nil, fmt.Errorf("kannuki: key payload of %s task: %w", t.Type(), err)
	}
	b, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("%w: key payload cannot be encoded: %v", kannuki.ErrInvalidArgument, err)
	}
	return canonicalPayload(b), nil
}

// writeSkipResult records a SkipResult as the task's result. It is best
// effort: the event already reported the skip, and tasks that did not come
// from a server (a direct call in a test) have no result writer.
func writeSkipResult(t *asynq.Task, payload any) {
	w := t.ResultWriter()
	if w == nil {
		return
	}
	key, err := kannukijob.Key(t.Type(), payload)
	if err != nil {
		return
	}
	b, err := json.Marshal(SkipResult{Skipped: true, Key: key})
	if err == nil {
		_, _ = w.Write(b)
	}
}

// SkipResult is the result (asynq.ResultWriter) of a task that the
// middleware skipped as a duplicate. asynq keeps it with the completed task
// when the task was enqueued with asynq.Retention; read it back with
// SkippedKey.
type SkipResult struct {
	// Skipped is always true: the handler did not run.
	Skipped bool `json:"kannuki_skipped"`
	// Key is the lock key that a running duplicate held (without the
	// Locker's prefix).
	Key string `json:"kannuki_key"`
}

// SkippedKey reports whether a task's result (asynq.TaskInfo.Result) is
// that of a task skipped as a duplicate, and the key of the duplicate.
func SkippedKey(result []byte) (key string, skipped bool) {
	if len(result) == 0 {
		return "", false
	}
	var r SkipResult
	if err := json.Unmarshal(result, &r); err != nil || !r.Skipped {
		return "", false
	}
	return r.Key, true
}

// RetryDelay returns an asynq.RetryDelayFunc for asynq.Config that retries
// tasks deferred by RetryLater after the middleware's RetryAfter, and asks
// fallback (nil means asynq.DefaultRetryDelayFunc) for every other error.
func RetryDelay(fallback asynq.RetryDelayFunc) asynq.RetryDelayFunc {
	if fallback == nil {
		fallback = asynq.DefaultRetryDelayFunc
	}
	return func(n int, err error, t *asynq.Task) time.Duration {
		var rl *kannukijob.RetryLaterError
		if errors.As(err, &rl) {
			return rl.After
		}
		return fallback(n, err, t)
	}
}

// IsFailure returns a function for asynq.Config.IsFailure that does not
// count a deferral by RetryLater as a failure, so asynq neither uses up the
// task's retries nor counts it in the queue's failure statistics. Other
// errors are failures when fallback says so (nil: every non-nil error).
func IsFailure(fallback func(error) bool) func(error) bool {
	return func(err error) bool {
		var rl *kannukijob.RetryLaterError
		switch {
		case errors.As(err, &rl):
			return false
		case fallback != nil:
			return fallback(err)
		}
		return err != nil
	}
}
