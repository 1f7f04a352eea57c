package kannukimysql

import (
	"context"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"net"
	"reflect"
	"strconv"
	"strings"
	"sync"
)

// session is what the Backend knows about one driver connection (one
// server session): its connection id, for KILL, and the statements
// prepared on it. It is used only by the goroutine that has the connection
// checked out of the pool, so its fields need no lock.
type session struct {
	key  any   // the driver connection; nil when not cached
	id   int64 // CONNECTION_ID()
	used uint64

	stmts  [numStmts]driver.Stmt
	noPrep bool // the driver or server refused to prepare: text statements

	// nc is the connection's socket as Options.Dialer made it, to watch
	// while the connection holds a lock; nil when it cannot be watched.
	nc net.Conn
}

// sessions caches a session per driver connection, so that the connection
// id is asked once per connection and each statement is prepared once per
// connection: with go-sql-driver/mysql and no interpolateParams, a
// statement with arguments would otherwise cost two round trips (prepare,
// execute).
//
// database/sql does not tell when it closes a connection, so the cache is
// bounded: past max(64, twice the pool's connections) entries, the least
// recently used one is dropped. Its statements are not closed (the
// connection may be in use by someone else at that moment); if that
// connection is still open and takes a lock again, its statements are
// prepared anew and the old ones stay on the server session until it ends.
type sessions struct {
	mu    sync.Mutex
	m     map[any]*session
	clock uint64
}

// get returns the cached session of driver connection dc, or nil.
func (c *sessions) get(dc any) *session {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.m[dc]
	if s != nil {
		c.clock++
		s.used = c.clock
	}
	return s
}

// put caches s, dropping the least recently used entries beyond limit.
func (c *sessions) put(s *session, limit int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = make(map[any]*session)
	}
	for len(c.m) >= limit {
		var oldest *session
		for _, e := range c.m {
			if oldest == nil || e.used < oldest.used {
				oldest = e
			}
		}
		delete(c.m, oldest.key)
	}
	c.clock++
	s.used = c.clock
	c.m[s.key] = s
}

// drop forgets s (its connection is being destroyed).
func (c *sessions) drop(s *session) {
	if s == nil || s.key == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m[s.key] == s {
		delete(c.m, s.key)
	}
}

// len is the number of cached sessions (for tests through Stats).
func (c *sessions) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.m)
}

// cacheable reports whether dc can be a map key: a pointer, as every
// driver's connection is.
func cacheable(dc any) bool {
	return dc != nil && reflect.TypeOf(dc).Kind() == reflect.Pointer
}

// knownSession returns dc's session if the Backend remembers it: no
// statement needed.
func (b *Backend) knownSession(dc any) *session {
	if cacheable(dc) {
		return b.cache.get(dc)
	}
	return nil
}

// session returns the session of driver connection dc, identifying the
// connection on first use (one round trip per connection).
func (b *Backend) session(ctx context.Context, dc any) (*session, error) {
	if s := b.knownSession(dc); s != nil {
		return s, nil
	}
	var dest [2]driver.Value
	if err := queryText(ctx, dc, sessionQuery, dest[:]); err != nil {
		return nil, err
	}
	id, null, err := asInt(dest[0])
	if err != nil || null {
		return nil, fmt.Errorf("unexpected CONNECTION_ID() %v: %w", dest[0], err)
	}
	b.noteVersion(asString(dest[1]))
	s := &session{id: id, noPrep: b.opts.DisablePrepared}
	if !b.opts.NoWatch {
		s.nc = b.opts.Dialer.lookup(id)
	}
	if cacheable(dc) {
		s.key = dc
		limit := 64
		if st := b.db.Stats(); 2*st.MaxOpenConnections > limit || 2*st.OpenConnections > limit {
			limit = 2 * max(st.MaxOpenConnections, st.OpenConnections)
		}
		b.cache.put(s, limit)
	}
	return s, nil
}

// run executes statement kind for name on driver connection dc and returns
// its single integer result. It uses the session's prepared statement
// (prepared on first use) and falls back to the text form when the driver
// or server cannot prepare.
func (s *session) run(ctx context.Context, dc any, kind stmtKind, name string) (val int64, null bool, err error) {
	var dest [1]driver.Value
	if !s.noPrep {
		for attempt := 0; ; attempt++ {
			st := s.stmts[kind]
			if st == nil {
				st, err = prepare(ctx, dc, preparedText[kind])
				if err != nil {
					if errors.Is(err, driver.ErrSkip) || isServerError(err) {
						// No server-side statements here (a proxy, a
						// driver without them): text from now on.
						s.noPrep = true
						break
					}
					return 0, false, err
				}
				s.stmts[kind] = st
			}
			err = queryStmt(ctx, st, name, nameParams(kind), dest[:])
			if attempt == 0 && errNumber(err) == errUnknownStmtHandler {
				// The server session forgot its statements (a driver
				// that resets sessions): nothing ran; prepare again.
				s.stmts = [numStmts]driver.Stmt{}
				continue
			}
			if err != nil {
				return 0, false, err
			}
			return asInt(dest[0])
		}
	}
	if err := queryText(ctx, dc, textStmt(kind, name), dest[:]); err != nil {
		return 0, false, err
	}
	return asInt(dest[0])
}

// prepare prepares query on driver connection dc.
func prepare(ctx context.Context, dc any, query string) (driver.Stmt, error) {
	switch c := dc.(type) {
	case driver.ConnPrepareContext:
		return c.PrepareContext(ctx, query)
	case driver.Conn:
		return c.Prepare(query)
	}
	return nil, driver.ErrSkip
}

// queryStmt runs prepared statement st with the lock name as each of its
// params parameters (at most 2) and reads the first row into dest.
func queryStmt(ctx context.Context, st driver.Stmt, name string, params int, dest []driver.Value) error {
	var rows driver.Rows
	var err error
	if sq, ok := st.(driver.StmtQueryContext); ok {
		var args [2]driver.NamedValue
		for i := range params {
			args[i] = driver.NamedValue{Ordinal: i + 1, Value: name}
		}
		rows, err = sq.QueryContext(ctx, args[:params])
	} else {
		var args [2]driver.Value
		for i := range params {
			args[i] = name
		}
		//lint:ignore SA1019 drivers without StmtQueryContext have only this
		rows, err = st.Query(args[:params])
	}
	if err != nil {
		return err
	}
	return readRow(rows, dest)
}

// queryText runs a statement without arguments on driver connection dc (one
// round trip on the text protocol) and reads the first row into dest.
func queryText(ctx context.Context, dc any, query string, dest []driver.Value) error {
	if qc, ok := dc.(driver.QueryerContext); ok {
		rows, err := qc.QueryContext(ctx, query, nil)
		if err == nil {
			return readRow(rows, dest)
		}
		if !errors.Is(err, driver.ErrSkip) {
			return err
		}
	}
	st, err := prepare(ctx, dc, query)
	if err != nil {
		return err
	}
	defer st.Close()
	var rows driver.Rows
	if sq, ok := st.(driver.StmtQueryContext); ok {
		rows, err = sq.QueryContext(ctx, nil)
	} else {
		//lint:ignore SA1019 drivers without StmtQueryContext have only this
		rows, err = st.Query(nil)
	}
	if err != nil {
		return err
	}
	return readRow(rows, dest)
}

// readRow reads the first row of rows into dest and closes rows.
func readRow(rows driver.Rows, dest []driver.Value) error {
	err := rows.Next(dest)
	cerr := rows.Close()
	if errors.Is(err, io.EOF) {
		err = errors.New("statement returned no row")
	}
	if err != nil {
		return err
	}
	return cerr
}

// asInt converts a driver value holding an integer (int64 on the binary
// protocol, []byte on the text protocol) or NULL.
func asInt(v driver.Value) (n int64, null bool, err error) {
	switch x := v.(type) {
	case nil:
		return 0, true, nil
	case int64:
		return x, false, nil
	case uint64:
		return int64(x), false, nil
	case float64:
		return int64(x), false, nil
	case []byte:
		n, err = strconv.ParseInt(strings.TrimSpace(string(x)), 10, 64)
		return n, false, err
	case string:
		n, err = strconv.ParseInt(strings.TrimSpace(x), 10, 64)
		return n, false, err
	}
	return 0, false, fmt.Errorf("unexpected result type %T", v)
}

// asString converts a driver value holding text.
func asString(v driver.Value) string {
	switch x := v.(type) {
	case []byte:
		return string(x)
	case string:
		return x
	}
	return ""
}
