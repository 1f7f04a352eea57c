// Package kannukijob guards jobs so that only one job with the same kind and
// arguments runs at a time, whatever queue runs them (the Ruby gem's
// unique_by_lock and job with_lock). Queue middleware (kannukiriver,
// kannukiasynq) builds on it.
//
// The lock key is the job kind plus a canonical JSON encoding of the
// arguments, so ["a-b"] and ["a", "b"] are different jobs (the Ruby gem
// joined arguments with "-", which made them the same). Map keys are sorted
// by encoding/json, so equal arguments give equal keys.
package kannukijob

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/kannuki-go/kannuki"
)

// OnConflict says what happens when a duplicate job already holds the lock.
type OnConflict uint8

const (
	// Skip reports the job as a skipped duplicate and does not run it (the default).
	Skip OnConflict = iota
	// Wait waits for the running duplicate to finish (up to Guard.Timeout), then runs.
	Wait
	// Fail returns an error matching ErrDuplicate.
	Fail
	// RetryLater returns a *RetryLaterError asking the queue to run the job
	// again after Guard.RetryAfter.
	RetryLater
)

// Outcome says what the guard did with a job.
type Outcome uint8

const (
	// Ran: the job held the lock and ran (its own error, if any, is returned).
	Ran Outcome = iota + 1
	// Skipped: a duplicate held the lock; the job did not run.
	Skipped
	// Deferred: a duplicate held the lock; the job should run again later.
	Deferred
	// Failed: the job did not run because of a conflict (Fail) or a lock error.
	Failed
)

func (o Outcome) String() string {
	switch o {
	case Ran:
		return "ran"
	case Skipped:
		return "skipped"
	case Deferred:
		return "deferred"
	case Failed:
		return "failed"
	}
	return "unknown"
}

// ErrDuplicate is returned with OnConflict Fail when a duplicate is running.
var ErrDuplicate = errors.New("kannuki: duplicate job running")

// RetryLaterError asks the queue to run the job again after After.
type RetryLaterError struct {
	Key   string
	After time.Duration
}

func (e *RetryLaterError) Error() string {
	return fmt.Sprintf("kannuki: duplicate job %q running; retry after %s", e.Key, e.After)
}

// Unwrap makes errors.Is(err, ErrDuplicate) true.
func (e *RetryLaterError) Unwrap() error { return ErrDuplicate }

// Guard runs jobs under per-job locks. The zero OnConflict is Skip.
type Guard struct {
	Locker     *kannuki.Locker
	OnConflict OnConflict
	// Timeout bounds the wait with OnConflict Wait; 0 waits as long as the
	// context allows.
	Timeout time.Duration
	// RetryAfter is the delay suggested with OnConflict RetryLater; 0 means 10 s.
	RetryAfter time.Duration
}

// MaxKeyArgsLen is the longest JSON encoding of a job's arguments that Key
// puts into a lock key as it is. Longer encodings are replaced by the JSON
// string "sha256:" + the hex SHA-256 of the encoding, so that jobs with
// large arguments still get a key well below keys.MaxKeyLen (a string
// never equals the encoding of an object, so the forms cannot collide
// unless the arguments themselves are such a string).
const MaxKeyArgsLen = 1024

// Key returns the lock key of a job: kind + ":" + the JSON of args (maps
// with sorted keys, as encoding/json writes them), hashed when longer
// than MaxKeyArgsLen.
func Key(kind string, args any) (string, error) {
	if kind == "" {
		return "", fmt.Errorf("%w: empty job kind", kannuki.ErrInvalidArgument)
	}
	b, err := json.Marshal(args)
	if err != nil {
		return "", fmt.Errorf("%w: job arguments cannot be encoded: %v", kannuki.ErrInvalidArgument, err)
	}
	if len(b) > MaxKeyArgsLen {
		sum := sha256.Sum256(b)
		b = []byte(`"sha256:` + hex.EncodeToString(sum[:]) + `"`)
	}
	return kind + ":" + string(b), nil
}

// Run runs fn unless a job with the same kind and args is running. It
// returns what it did and fn's error (or the conflict's error). A skipped
// duplicate is reported as a kannuki.EventSkipped event to the Locker's hooks
// and as the Skipped outcome, never silently.
func (g Guard) Run(ctx context.Context, kind string, args any, fn func(ctx context.Context) error) (Outcome, error) {
	if g.Locker == nil || fn == nil {
		return Failed, fmt.Errorf("%w: Guard needs a Locker and a function", kannuki.ErrInvalidArgument)
	}
	key, err := Key(kind, args)
	if err != nil {
		return Failed, err
	}
	if g.OnConflict == Wait {
		opt := kannuki.NoTimeout()
		if g.Timeout > 0 {
			opt = kannuki.Timeout(g.Timeout)
		}
		err := g.Locker.WithLock(ctx, key, fn, opt)
		if errors.Is(err, kannuki.ErrNotAcquired) {
			return Failed, err
		}
		return Ran, err
	}
	ok, err := g.Locker.TryLock(ctx, key, fn)
	switch {
	case ok:
		return Ran, err
	case err != nil:
		return Failed, err
	}
	return g.conflict(ctx, key)
}

func (g Guard) conflict(ctx context.Context, key string) (Outcome, error) {
	switch g.OnConflict {
	case Fail:
		return Failed, fmt.Errorf("%w: %q", ErrDuplicate, key)
	case RetryLater:
		after := g.RetryAfter
		if after <= 0 {
			after = 10 * time.Second
		}
		return Deferred, &RetryLaterError{Key: key, After: after}
	}
	full := key
	if k, err := g.Locker.Key(key); err == nil {
		full = k.String // with the Locker's prefix, as the lock events show it
	}
	g.Locker.Emit(ctx, kannuki.Event{Kind: kannuki.EventSkipped, Key: full, Reason: kannuki.ReasonHeld})
	return Skipped, nil
}
