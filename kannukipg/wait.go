package kannukipg

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/kannuki-go/kannuki/internal/pgsql"
)

// foldGrace is how long the context watcher lets the server end a wait
// whose lock_timeout is the context's own deadline before it interrupts
// the statement itself.
const foldGrace = 250 * time.Millisecond

// maxCancelPause caps the pause between repeated cancel requests.
const maxCancelPause = 100 * time.Millisecond

// wait blocks on the server until the lock is granted, wait runs out
// (wait < 0: no bound) or ctx ends. It always leaves the lease either
// holding the lock (nil error) or with its connection back in the pool
// holding nothing, or destroyed.
//
// The statement runs under a context that ctx does not cancel: both
// drivers answer a canceled context by closing the connection (pgx/stdlib
// sets a past deadline on the socket; lib/pq sends a cancel request and
// then closes), which loses the chance to check and undo a grant that
// raced the cancel, and with pgx leaves the server session queued for the
// lock with no one to read its answer. Instead, when ctx ends, a second
// pooled connection sends pg_cancel_backend to the waiting session (again
// until the statement returns, since a cancel arriving before the
// statement starts is ignored by the server), and the pinned connection
// stays usable for the clean-up.
func (l *lease) wait(ctx context.Context, wait time.Duration) error {
	folded := false
	if dl, ok := ctx.Deadline(); ok {
		left := time.Until(dl)
		if left <= 0 {
			l.putBack()
			return context.DeadlineExceeded
		}
		if wait < 0 || left < wait {
			// The server ends the wait at the deadline by itself: no
			// cancel, no second connection needed in the common case.
			wait, folded = left, true
		}
	}
	q := pgsql.Lock(l.key, l.mode, wait)

	var pid int64
	if ctx.Done() != nil {
		if ctx.Err() != nil {
			l.putBack()
			return l.ctxErr(ctx, false)
		}
		var err error
		if pid, err = l.b.pid(ctx, l.conn); err != nil {
			l.destroy()
			return fmt.Errorf("wait: %w", err)
		}
	}
	aborted, err := l.b.execDetached(ctx, l.conn, q, pid, folded)

	switch {
	case aborted:
		// The driver's own cancel ran: the connection is closed or about
		// to be, whatever the statement's outcome.
		l.destroy()
		return l.ctxErr(ctx, folded)
	case err == nil:
		return nil
	}
	if granted, err := pgsql.Settle(ctx, l.settler(ctx), err, folded); !granted {
		return err
	}
	return nil
}

// ctxErr is the error of a wait that ctx ended.
func (l *lease) ctxErr(ctx context.Context, folded bool) error { return pgsql.WaitEnded(ctx, folded) }

// pid returns the backend pid of e's session (a pinned *sql.Conn, or the
// *sql.Tx on one), for pg_cancel_backend.
func (b *Backend) pid(ctx context.Context, e execer) (int64, error) {
	ctx, cancel := b.bounded(ctx, false)
	defer cancel()
	var pid int64
	err := e.QueryRowContext(ctx, "SELECT pg_backend_pid()").Scan(&pid)
	return pid, err
}

// execDetached runs the waiting statement q on e under a context that ctx
// does not cancel (see lease.wait for why). When ctx ends first, interrupt
// cancels q on session pid from a second connection; aborted reports that
// it fell back to the driver's own cancellation, which closes e's
// connection whatever q did. pid is used only when ctx can end
// (ctx.Done() != nil). Once execDetached returns, no cancel is on its way
// to the session any more.
func (b *Backend) execDetached(ctx context.Context, e execer, q string, pid int64, folded bool) (aborted bool, err error) {
	stmtCtx := context.WithoutCancel(ctx)
	if ctx.Done() == nil {
		_, err = e.ExecContext(stmtCtx, q)
		return false, err
	}
	stmtCtx, abort := context.WithCancel(stmtCtx)
	defer abort()
	done, fired := make(chan struct{}), make(chan struct{})
	var driverCancel atomic.Bool
	stop := context.AfterFunc(ctx, func() {
		defer close(fired)
		b.interrupt(ctx, pid, folded, done, func() {
			driverCancel.Store(true)
			abort()
		})
	})
	_, err = e.ExecContext(stmtCtx, q)
	close(done)
	if !stop() {
		<-fired // no cancel may still be on its way to this session
	}
	return driverCancel.Load(), err
}

// interrupt ends a waiting statement on session pid after its context
// ended, until done closes. It cancels through a second pooled connection;
// when none is free (see "Pool size" in the package documentation) or the
// cancel fails, it falls back to abort, the driver's own cancellation,
// which closes the pinned connection.
func (b *Backend) interrupt(ctx context.Context, pid int64, folded bool, done <-chan struct{}, abort func()) {
	if folded && errors.Is(ctx.Err(), context.DeadlineExceeded) {
		t := time.NewTimer(foldGrace)
		select {
		case <-done:
			t.Stop()
			return
		case <-t.C:
		}
	}
	deadline := time.Now().Add(b.releaseTimeout)
	side, err := b.sideConn(ctx, deadline)
	if err != nil {
		abort()
		return
	}
	defer side.Close() // it ran only pg_cancel_backend: safe to pool
	q := "SELECT pg_cancel_backend(" + strconv.FormatInt(pid, 10) + ")"
	pause := time.Millisecond
	for {
		sctx, cancel := context.WithDeadline(context.WithoutCancel(ctx), deadline)
		_, err := side.ExecContext(sctx, q)
		cancel()
		if err != nil {
			abort()
			return
		}
		t := time.NewTimer(pause)
		select {
		case <-done:
			t.Stop()
			return
		case <-t.C:
		}
		if time.Now().After(deadline) {
			abort()
			return
		}
		pause = min(2*pause, maxCancelPause)
	}
}

// sideConn takes a second connection for a cancel, without waiting long
// for a pool that is visibly exhausted.
func (b *Backend) sideConn(ctx context.Context, deadline time.Time) (*sql.Conn, error) {
	if st := b.db.Stats(); st.MaxOpenConnections > 0 && st.OpenConnections >= st.MaxOpenConnections && st.Idle == 0 {
		return nil, ErrNoConnection
	}
	if soon := time.Now().Add(b.connWait); soon.Before(deadline) {
		deadline = soon
	}
	cctx, cancel := context.WithDeadline(context.WithoutCancel(ctx), deadline)
	defer cancel()
	return b.db.Conn(cctx)
}
