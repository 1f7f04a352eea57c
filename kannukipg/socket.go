package kannukipg

import (
	"database/sql"
	"database/sql/driver"
	"errors"
	"net"
	"reflect"
	"sync"
	"time"
)

// On pgx/stdlib the try, the unlock and the relock of a lease are bounded
// through the connection's socket when it can be reached (lease.bounded):
// the statement runs on a context that cannot end, so pgx watches nothing,
// and the Backend's socket watchdog (one due.Queue for all leases) gives
// the socket a deadline in the past if the statement is still running
// after ReleaseTimeout. That is what pgx itself does when a statement's
// context ends, minus the callback it registers for every statement whose
// context can end (measured with callgrind: about 12,000 of the 46,000
// client instructions of an uncontended cycle went to that callback and to
// the context the cancel-based bound needs). The connection is destroyed
// after a statement the watchdog cut short.
//
// The socket is reached without importing pgx (this module depends on the
// standard library only): pgx/stdlib's driver connection has Conn() (the
// *pgx.Conn), whose PgConn() has Conn() net.Conn. The methods are looked
// up by constant names, which keeps the linker's dead-code elimination,
// once per driver connection. A driver without them (or a pgx that
// renamed them) keeps the cancel-based bound of Backend.fast.

// errOverdue is why a statement the socket watchdog cut short failed.
var errOverdue = errors.New("the statement ran past ReleaseTimeout")

// netConnOf returns the socket of a pgx/stdlib driver connection, or nil.
func netConnOf(dc any) net.Conn {
	if s, ok := pgConnOf(dc).(interface{ Conn() net.Conn }); ok {
		return s.Conn()
	}
	return nil
}

// pgConnOf returns the *pgconn.PgConn under a pgx/stdlib driver
// connection (dc.Conn().PgConn()), or nil for another driver. The two
// method lookups are written out, not shared through a helper taking the
// name: MethodByName with a name that is not a constant makes the linker
// keep every exported method of every type in the binary.
func pgConnOf(dc any) (pc any) {
	defer func() {
		if recover() != nil { // a method of that name with another shape
			pc = nil
		}
	}()
	v := reflect.ValueOf(dc)
	if m := v.MethodByName("Conn"); m.IsValid() && m.Type().NumIn() == 0 && m.Type().NumOut() == 1 {
		v = m.Call(nil)[0]
	} else {
		return nil
	}
	if !v.IsValid() || v.Kind() == reflect.Pointer && v.IsNil() {
		return nil
	}
	if m := v.MethodByName("PgConn"); m.IsValid() && m.Type().NumIn() == 0 && m.Type().NumOut() == 1 {
		v = m.Call(nil)[0]
	} else {
		return nil
	}
	if !v.IsValid() || v.Kind() == reflect.Pointer && v.IsNil() {
		return nil
	}
	return v.Interface()
}

// sockets remembers the socket of each driver connection (nil when it
// has none to offer), for at most preparedLimit connections. A Backend's
// connections all come from one driver, so one find serves them all.
type sockets struct {
	mu    sync.Mutex
	conns map[driver.Conn]net.Conn
	fifo  []driver.Conn
}

// of returns conn's socket, found by find (netConnOf, or a Dialer's
// lookup) the first time, or nil when it cannot be reached.
func (s *sockets) of(conn *sql.Conn, find func(dc any) net.Conn) net.Conn {
	var nc net.Conn
	_ = conn.Raw(func(dc any) error {
		c, ok := dc.(driver.Conn)
		if !ok {
			return nil
		}
		s.mu.Lock()
		nc, ok = s.conns[c]
		s.mu.Unlock()
		if ok {
			return nil
		}
		nc = find(dc)
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.conns == nil {
			s.conns = make(map[driver.Conn]net.Conn)
		}
		if _, dup := s.conns[c]; !dup {
			s.fifo = append(s.fifo, c)
		}
		s.conns[c] = nc
		if len(s.fifo) > preparedLimit {
			delete(s.conns, s.fifo[0])
			s.fifo = s.fifo[1:]
		}
		return nil
	})
	return nc
}

// startBound bounds the statement the lease is about to run.
func (l *lease) startBound() {
	l.bound.Start(&l.b.sockDog, l.sock, time.Now().Add(l.b.releaseTimeout))
}

// endBound ends the bound and reports whether the watchdog cut the
// statement short (the socket then fails every read and write).
func (l *lease) endBound() (fired bool) { return l.bound.End(&l.b.sockDog) }
