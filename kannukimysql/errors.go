package kannukimysql

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"net"
	"reflect"
	"strconv"
	"strings"
	"syscall"

	"github.com/kannuki-go/kannuki/store"
)

// ErrNoConnection (which matches store.ErrPoolExhausted, so a Locker's
// TryLock reports it as an error, never as "held") reports that Acquire
// found no free connection in the *sql.DB pool within its budget (see
// "Pool size" in the package documentation). The error Acquire returns
// then matches both ErrNoConnection and store.ErrNotAcquired, as in
// kannukipg and kannukipgxv5: the lock was not obtained within the wait,
// so a strategy that retries on ErrNotAcquired retries this too.
var ErrNoConnection = fmt.Errorf("%w: mysql: no free connection in the pool", store.ErrPoolExhausted)

// Server error numbers Kannuki acts on.
const (
	errTooLongIdent       = 1059 // MariaDB: lock name too long
	errUnknownThread      = 1094 // KILL of a session that is gone
	errLockDeadlock       = 1213 // MariaDB: deadlock among user locks
	errUnknownStmtHandler = 1243 // prepared statement gone (session reset)
	errUserLockWrongName  = 3057 // MySQL: bad lock name
	errUserLockDeadlock   = 3058 // MySQL: deadlock among user locks
)

// errNumber returns the server error number in err's chain, or 0. The
// driver is not imported: go-sql-driver/mysql's *MySQLError has a Number
// field, found here by reflection; other drivers' "Error 1213 ..." messages
// are parsed.
func errNumber(err error) int {
	for e := err; e != nil; {
		v := reflect.ValueOf(e)
		if v.Kind() == reflect.Pointer && !v.IsNil() {
			v = v.Elem()
		}
		if v.Kind() == reflect.Struct {
			if f := v.FieldByName("Number"); f.IsValid() {
				switch f.Kind() {
				case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
					return int(f.Uint())
				case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
					return int(f.Int())
				}
			}
		}
		if n := leadingNumber(e.Error()); n != 0 {
			return n
		}
		switch u := e.(type) {
		case interface{ Unwrap() error }:
			e = u.Unwrap()
		case interface{ Unwrap() []error }:
			for _, ee := range u.Unwrap() {
				if n := errNumber(ee); n != 0 {
					return n
				}
			}
			e = nil
		default:
			e = nil
		}
	}
	return 0
}

// leadingNumber parses the number of a message of the form
// "Error 1213 (40001): ...", as MySQL drivers print server errors.
func leadingNumber(msg string) int {
	digits, ok := strings.CutPrefix(msg, "Error ")
	if !ok {
		return 0
	}
	n := 0
	for n < len(digits) && digits[n] >= '0' && digits[n] <= '9' {
		n++
	}
	v, err := strconv.Atoi(digits[:n])
	if err != nil {
		return 0
	}
	return v
}

// isDeadlock reports MariaDB's 1213 and MySQL's 3058.
func isDeadlock(err error) bool {
	n := errNumber(err)
	return n == errLockDeadlock || n == errUserLockDeadlock
}

// isBadName reports the servers' rejections of a lock name.
func isBadName(err error) bool {
	n := errNumber(err)
	return n == errTooLongIdent || n == errUserLockWrongName
}

// isServerError reports an error the server sent: the connection is
// still in step with the server and the statement had no effect.
func isServerError(err error) bool {
	return err != nil && errNumber(err) != 0 && !connBroken(err)
}

// connBroken reports whether err shows that the connection, and with it
// the server session's locks, is or may be gone.
func connBroken(err error) bool {
	if err == nil {
		return false
	}
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		// The driver closes the socket when a statement's context ends.
		return true
	case errors.Is(err, driver.ErrBadConn), errors.Is(err, sql.ErrConnDone),
		errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF),
		errors.Is(err, net.ErrClosed), errors.Is(err, syscall.ECONNRESET),
		errors.Is(err, syscall.EPIPE):
		return true
	}
	var ne net.Error
	if errors.As(err, &ne) {
		return true
	}
	switch errNumber(err) {
	case 1053, 1927, 2006, 2013: // server shutdown, connection killed, gone away, lost
		return true
	}
	// go-sql-driver/mysql's ErrInvalidConn is a plain error.
	return strings.Contains(err.Error(), "invalid connection")
}

// Server errors that refuse a new connection for want of capacity.
const (
	errOutOfMemory      = 1037 // ER_OUTOFMEMORY
	errConCount         = 1040 // ER_CON_COUNT_ERROR: Too many connections
	errOutOfResources   = 1041 // ER_OUT_OF_RESOURCES
	errCantCreateThread = 1135 // ER_CANT_CREATE_THREAD
	errTooManyUserConns = 1203 // ER_TOO_MANY_USER_CONNECTIONS: global max_user_connections
	errUserLimitReached = 1226 // ER_USER_LIMIT_REACHED: the account's MAX_USER_CONNECTIONS and the like
)

// capacityErr returns, for a failure to open a connection because the
// server takes no more (every held lock pins a connection, so this is
// where holding many locks on MySQL or MariaDB breaks first), an error
// matching store.ErrCapacity that names the server setting; else nil.
func capacityErr(err error) error {
	var what string
	switch errNumber(err) {
	case errConCount:
		what = "the server's max_connections"
	case errTooManyUserConns:
		what = "the server's max_user_connections"
	case errUserLimitReached:
		what = "the account's MAX_USER_CONNECTIONS (or another resource limit of the user, see the message)"
	case errCantCreateThread, errOutOfResources, errOutOfMemory:
		what = "the server's memory or thread limit"
	default:
		return nil
	}
	return fmt.Errorf("%w: mysql: the server refused a new connection: %s is reached, and every held or awaited lock pins one connection: %w", store.ErrCapacity, what, err)
}
