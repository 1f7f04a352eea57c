package kannukimysql

import (
	"context"
	"database/sql/driver"
	"errors"
	"fmt"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/kannuki-go/kannuki/store"

	"github.com/kannuki-go/kannuki/internal/due"
)

// wait blocks on the server until the lock is granted, end passes (zero:
// no end; wait is the request's Wait, for messages) or ctx ends. It leaves
// the lease either holding the lock (nil error) or with nothing held: the
// connection back in the pool, or destroyed and its session gone.
//
// Each statement is GET_LOCK(name, t) with t > 0, never negative (MariaDB
// answers GET_LOCK(name, -1) with NULL at once). t is the time left, capped
// by Options.MaxServerWait (a wait forever repeats the statement) and by
// ctx's deadline, so the server itself ends the wait on time.
//
// The statement does not run under ctx: go-sql-driver/mysql answers a
// canceled context by closing the socket, and the server does not notice
// that while the session waits in GET_LOCK. It goes on waiting, takes the
// lock when the holder releases it, and only then finds the client gone.
// So when ctx is canceled the connection is closed (the driver does it) and
// the session is then ended with KILL from another pooled connection, and
// Acquire returns only once the session is gone: an error means nothing
// is held, as seen from any session.
func (l *lease) wait(ctx context.Context, end time.Time, wait time.Duration) error {
	whole := l.b.wholeSeconds()
	for {
		if err := ctx.Err(); err != nil {
			l.putBack()
			return l.ctxErr(err, nil)
		}
		now := time.Now()
		chunk, final, byCtx := l.b.opts.MaxServerWait, false, false
		if !end.IsZero() {
			left := end.Sub(now)
			if left <= 0 {
				l.putBack()
				return l.notGranted(wait)
			}
			if left <= chunk {
				chunk, final = left, true
			}
		}
		if dl, ok := ctx.Deadline(); ok {
			left := dl.Sub(now)
			if left <= 0 {
				l.putBack()
				return l.ctxErr(context.DeadlineExceeded, nil)
			}
			if left <= chunk {
				chunk, final, byCtx = left, true, true
			}
		}
		lit, clientCut := serverWait(chunk, whole)
		var cut time.Time
		if clientCut {
			cut = now.Add(chunk)
		}
		v, null, interrupted, err := l.waitOnce(ctx, lit, cut)
		switch {
		case err == nil && !null && v == 1:
			return nil
		case err == nil && !null && v == 0:
			if final && !time.Now().Before(now.Add(chunk)) {
				l.putBack()
				if byCtx {
					return l.ctxErr(context.DeadlineExceeded, nil)
				}
				return l.notGranted(wait)
			}
			// A wait forever (or longer than MaxServerWait) goes on; so
			// does a final one the server ended a hair early (its clock
			// starts when the statement does, and rounds): the caller was
			// promised no answer before its budget or deadline.
			continue
		case err == nil:
			err = errors.New("GET_LOCK returned NULL (the session was killed, or a server error)")
		}
		cerr := l.settle(ctx, err)
		if cerr != nil {
			err = fmt.Errorf("%w (clean-up: %w)", err, cerr)
		}
		if interrupted {
			if c := ctxDone(ctx); c != nil {
				return l.ctxErr(c, cerr)
			}
			if clientCut && !time.Now().Before(cut) {
				// The client's cut of a whole-second wait: a timeout.
				if byCtx {
					return l.ctxErr(context.DeadlineExceeded, cerr)
				}
				if cerr != nil {
					return fmt.Errorf("not granted within %s: %w (clean-up: %w)", wait, store.ErrNotAcquired, cerr)
				}
				return l.notGranted(wait)
			}
		}
		if isDeadlock(err) {
			return fmt.Errorf("%w: %w", store.ErrDeadlock, err)
		}
		if c := ctxDone(ctx); c != nil {
			return l.ctxErr(c, err)
		}
		return fmt.Errorf("wait: %w", err)
	}
}

// waitOnce runs one waiting statement. interrupted reports that its
// context ended (ctx canceled, the client cut, or the grace past ctx's
// deadline), which makes the driver close the connection; a result read
// before that is still valid (err == nil).
func (l *lease) waitOnce(ctx context.Context, lit string, cut time.Time) (v int64, null, interrupted bool, err error) {
	wctx, stop := waitContext(ctx, cut)
	q := waitStmt(l.name, lit)
	err = l.conn.Raw(func(dc any) error {
		var dest [1]driver.Value
		if err := queryText(wctx, dc, q, dest[:]); err != nil {
			return err
		}
		var err error
		v, null, err = asInt(dest[0])
		return err
	})
	interrupted = stop()
	return v, null, interrupted, err
}

// waitContext returns the context of a waiting statement: detached from
// ctx's deadline (the server's own timeout ends the wait then, and the
// statement is interrupted only deadlineGrace later), canceled at once
// when ctx is canceled, and at cut if cut is set. stop releases it and
// reports whether it had ended.
func waitContext(ctx context.Context, cut time.Time) (context.Context, func() bool) {
	hard := cut
	if dl, ok := ctx.Deadline(); ok {
		if g := dl.Add(deadlineGrace); hard.IsZero() || g.Before(hard) {
			hard = g
		}
	}
	base := context.WithoutCancel(ctx)
	var (
		wctx   context.Context
		cancel context.CancelFunc
	)
	if hard.IsZero() {
		wctx, cancel = context.WithCancel(base)
	} else {
		wctx, cancel = context.WithDeadline(base, hard)
	}
	stopAfter := context.AfterFunc(ctx, func() {
		if !errors.Is(ctx.Err(), context.DeadlineExceeded) {
			cancel()
		}
	})
	return wctx, func() bool {
		stopAfter()
		ended := wctx.Err() != nil
		cancel()
		return ended
	}
}

// ctxErr is the error of an acquisition that ctx ended (err is ctx's
// error); detail, if not nil, says what else went wrong.
func (l *lease) ctxErr(err, detail error) error {
	if detail != nil {
		return fmt.Errorf("%w (%v)", err, detail)
	}
	return err
}

// notGranted is the error of a bounded wait that ran out.
func (l *lease) notGranted(wait time.Duration) error {
	return fmt.Errorf("not granted within %s: %w", wait, store.ErrNotAcquired)
}

// watchdog ends a session whose statement does not answer in time. The
// Backend's watchdogs wait in one queue with one timer (internal/due)
// rather than a runtime timer each: a new earliest runtime timer makes
// the Go runtime wake a second thread, twice per lock cycle.
type watchdog struct {
	node  due.Node // on Backend.dogs; Owner is the *watchdog
	b     *Backend
	ctx   context.Context // for its values only
	id    int64
	state atomic.Int32  // 0 running, 1 fired, 2 stopped
	fired chan struct{} // made by the firing; closed when it is over
}

// watch arms a watchdog for one statement of session id.
func (b *Backend) watch(ctx context.Context, id int64) *watchdog {
	w := &watchdog{b: b, ctx: ctx, id: id}
	w.node.Owner = w
	b.dogs.Push(&w.node, time.Now().Add(b.opts.ReleaseTimeout))
	return w
}

// watchdogFired is called on the queue's timer goroutine when a statement
// is overdue. Ending the session takes a KILL on another connection, so
// it runs on a goroutine of its own and the queue's other watchdogs are
// not held up.
func watchdogFired(n *due.Node) {
	w := n.Owner.(*watchdog)
	w.fired = make(chan struct{}) // read by stop only after the swap below
	if w.state.CompareAndSwap(0, 1) {
		go func() {
			defer close(w.fired)
			_ = w.b.endSession(w.ctx, w.id)
		}()
	}
}

// stop disarms the watchdog after the statement returned. It reports
// whether the watchdog fired, in which case the session has been ended
// (or that was attempted) and the statement's outcome must not be trusted.
func (w *watchdog) stop() bool {
	if w.state.CompareAndSwap(0, 2) {
		w.b.dogs.Remove(&w.node)
		return false
	}
	<-w.fired
	return true
}

// minCleanup is the least time endSession gets, however small
// Options.ReleaseTimeout is.
const minCleanup = time.Second

// endSession ends server session id (KILL from another pooled connection)
// and returns once the process list no longer shows it: a session that is
// gone holds no lock and can take none. Bounded by Options.ReleaseTimeout
// (at least minCleanup).
// It needs a free connection: with a pool of one, the connection just
// destroyed makes room for it.
func (b *Backend) endSession(ctx context.Context, id int64) error {
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), max(b.opts.ReleaseTimeout, minCleanup))
	defer cancel()
	kc, err := b.db.Conn(cctx)
	if err != nil {
		return fmt.Errorf("end session %d: no connection to send KILL from: %w", id, err)
	}
	defer kc.Close()
	ids := strconv.FormatInt(id, 10)
	if _, err := kc.ExecContext(cctx, "KILL "+ids); err != nil && errNumber(err) != errUnknownThread {
		return fmt.Errorf("end session %d: %w", id, err)
	}
	q := "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE ID = " + ids
	pause := 100 * time.Microsecond
	for {
		var n int
		if err := kc.QueryRowContext(cctx, q).Scan(&n); err != nil {
			return fmt.Errorf("end session %d: %w", id, err)
		}
		if n == 0 {
			return nil
		}
		t := time.NewTimer(pause)
		select {
		case <-cctx.Done():
			t.Stop()
			return fmt.Errorf("end session %d: still in the process list: %w", id, cctx.Err())
		case <-t.C:
		}
		pause = min(2*pause, 10*time.Millisecond)
	}
}
