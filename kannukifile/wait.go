//go:build linux || darwin || dragonfly || freebsd || netbsd || openbsd

package kannukifile

import (
	"context"
	"errors"
	"time"

	"github.com/kannuki-go/kannuki/store"
)

// Re-check intervals of a waiter (see the package doc).
const (
	// minRecheck is the first re-check after a wake-up that did not let
	// the waiter in: it covers the kernel announcing a dying holder's
	// close just before it drops the lock.
	minRecheck = time.Millisecond
	// maxEventRecheck caps re-checks while inotify reports changes: it
	// only covers tools that unlock without closing.
	maxEventRecheck = 250 * time.Millisecond
	// maxPollRecheck caps the polling fallback without inotify.
	maxPollRecheck = 25 * time.Millisecond
)

// waker puts a waiter to sleep until the lock file may have changed.
type waker interface {
	// sleep returns (true, nil) on a change, (false, nil) at until, and
	// (false, ctx.Err()) when ctx ends.
	sleep(ctx context.Context, until time.Time) (bool, error)
	// maxDelay caps the re-check interval.
	maxDelay() time.Duration
	close()
}

// waitFlock waits for the lock on fd until it is granted (nil), deadline
// passes (zero: never) or ctx ends. It only ever tries non-blocking
// locks, so giving up leaves nothing behind.
func (b *Backend) waitFlock(ctx context.Context, key store.Key, fd int, path string, mode store.Mode, start, deadline time.Time) error {
	w := b.wakers.newWaker(ctx, path)
	defer w.close()
	// Try again now that the watch is in place: a release between the
	// first try and the watch would otherwise wait for the next re-check.
	if ok, err := tryFlock(fd, mode, path); err != nil || ok {
		return err
	}
	delay := w.maxDelay()
	for {
		until := time.Now().Add(delay)
		if !deadline.IsZero() && deadline.Before(until) {
			until = deadline
		}
		changed, err := w.sleep(ctx, until)
		if err != nil {
			return err
		}
		ok, err := tryFlock(fd, mode, path)
		if err != nil || ok {
			return err
		}
		if !deadline.IsZero() && !time.Now().Before(deadline) {
			return store.ErrNotAcquired
		}
		if changed {
			delay = minRecheck
		} else {
			delay = min(2*delay, w.maxDelay())
		}
		// A removed or replaced file is never released by anyone who
		// matters any more: start over on the file the path now names.
		if same, err := samePath(fd, path); err != nil || !same {
			return errors.Join(errReplaced, err)
		}
	}
}

// pollWaker sleeps on a timer: the fallback without file events.
type pollWaker struct{}

func (pollWaker) sleep(ctx context.Context, until time.Time) (bool, error) {
	t := time.NewTimer(time.Until(until))
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false, ctx.Err()
	case <-t.C:
		return false, nil
	}
}

func (pollWaker) maxDelay() time.Duration { return maxPollRecheck }
func (pollWaker) close()                  {}
