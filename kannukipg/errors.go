package kannukipg

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"syscall"

	"github.com/kannuki-go/kannuki/store"
)

// ErrNoConnection (which matches store.ErrPoolExhausted, so a Locker's
// TryLock reports it as an error, never as "held") reports that Acquire
// found no free connection in the
// *sql.DB pool within its bound (see the package documentation, "Pool
// size"). The error Acquire returns then matches both ErrNoConnection and
// store.ErrNotAcquired: the lock was not obtained within the wait, and
// goroutines contending for one key through a small pool queue for a
// connection before they queue on the server, so a strategy that retries
// on ErrNotAcquired should retry this too.
var ErrNoConnection = fmt.Errorf("%w: no free connection in the *sql.DB pool", store.ErrPoolExhausted)

// sqlState returns the SQLSTATE of a server error, or "". Both pgx
// (*pgconn.PgError) and lib/pq (*pq.Error) have a SQLState() string method,
// so the drivers need not be imported.
func sqlState(err error) string {
	var s interface{ SQLState() string }
	if errors.As(err, &s) {
		return s.SQLState()
	}
	return ""
}

// sessionGone reports whether err shows that the database session behind a
// connection has ended (terminated, connection reset or closed), which
// takes its advisory locks with it.
func sessionGone(err error) bool {
	if err == nil {
		return false
	}
	if st := sqlState(err); st != "" {
		// Class 08: connection exception; 57P01-57P05: admin shutdown,
		// crash shutdown, cannot connect now, database dropped,
		// idle_session_timeout; 25P03: idle_in_transaction_session_timeout.
		// Each ends the session, and with it its locks.
		return strings.HasPrefix(st, "08") || strings.HasPrefix(st, "57P") || st == "25P03"
	}
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return false // our own bound: the state is unknown, not gone
	case errors.Is(err, driver.ErrBadConn), errors.Is(err, sql.ErrConnDone),
		errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF),
		errors.Is(err, net.ErrClosed), errors.Is(err, syscall.ECONNRESET),
		errors.Is(err, syscall.EPIPE):
		return true
	}
	var ne net.Error
	if errors.As(err, &ne) && !ne.Timeout() {
		return true
	}
	// pgx reports a connection closed under it as a plain error.
	return strings.Contains(err.Error(), "conn closed")
}
