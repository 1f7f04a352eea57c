package kannukipg

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"sync"

	"github.com/kannuki-go/kannuki/store"
)

// preparedLimit bounds the driver connections whose statements a Backend
// remembers. An entry keeps its driver connection in memory until it is
// evicted (oldest first), so the bound is what a closed connection can
// cost; an evicted connection still in use simply prepares again.
const preparedLimit = 256

// prepared keeps the fast-path statements (try and unlock, per mode and
// key form) prepared once on each driver connection, for FormPrepared.
// database/sql offers no statement that is prepared once per connection
// and runs on a given *sql.Conn (sql.Stmt picks its own connection;
// Conn.PrepareContext prepares anew every time), so the statements are
// prepared and run through the driver inside Conn.Raw, which holds the
// driver connection exclusively.
type prepared struct {
	mu    sync.Mutex
	conns map[driver.Conn]*connStmts
	fifo  []driver.Conn
}

// connStmts are one driver connection's statements, [unlock][shared][pair].
type connStmts [2][2][2]driver.Stmt

// fastSQL are the constant texts, [unlock][shared][pair], in the
// rows-affected form (see execForm).
var fastSQL = [2][2][2]string{
	{
		{execForm(boundTry[0][0]), execForm(boundTry[0][1])},
		{execForm(boundTry[1][0]), execForm(boundTry[1][1])},
	},
	{
		{execForm(boundUnlock[0][0]), execForm(boundUnlock[0][1])},
		{execForm(boundUnlock[1][0]), execForm(boundUnlock[1][1])},
	},
}

// errNoDriverConn: Conn.Raw handed over something that is not a
// driver.Conn, which database/sql never does.
var errNoDriverConn = errors.New("database/sql gave no driver.Conn")

// run executes statement [op][shared][pair] with k's ids on conn's driver
// connection, preparing it there first if needed, and returns the rows
// affected: 1 when the function returned true.
func (p *prepared) run(ctx context.Context, conn *sql.Conn, op int, k store.Key, m store.Mode) (bool, error) {
	shared, pair := b2i(m == store.ModeShared), b2i(k.Pair)
	var args []driver.NamedValue
	if k.Pair {
		args = []driver.NamedValue{{Ordinal: 1, Value: int64(k.K1)}, {Ordinal: 2, Value: int64(k.K2)}}
	} else {
		args = []driver.NamedValue{{Ordinal: 1, Value: k.ID}}
	}
	var n int64
	err := conn.Raw(func(dc any) error {
		c, ok := dc.(driver.Conn)
		if !ok {
			return errNoDriverConn
		}
		st, err := p.stmt(ctx, c, op, shared, pair)
		if err != nil {
			return err
		}
		res, err := execStmt(ctx, st, args)
		if err != nil {
			// Whatever happened, do not trust this connection's
			// statements again (a session reset, say, drops them).
			p.forget(c)
			return err
		}
		n, err = res.RowsAffected()
		return err
	})
	return n == 1, err
}

// stmt returns c's statement [op][shared][pair], preparing it if needed.
// The caller holds c exclusively (inside Conn.Raw).
func (p *prepared) stmt(ctx context.Context, c driver.Conn, op, shared, pair int) (driver.Stmt, error) {
	p.mu.Lock()
	cs := p.conns[c]
	if cs == nil {
		if p.conns == nil {
			p.conns = make(map[driver.Conn]*connStmts)
		}
		cs = new(connStmts)
		p.conns[c] = cs
		p.fifo = append(p.fifo, c)
		if len(p.fifo) > preparedLimit {
			delete(p.conns, p.fifo[0])
			p.fifo = p.fifo[1:]
		}
	}
	st := cs[op][shared][pair]
	p.mu.Unlock()
	if st != nil {
		return st, nil
	}
	var err error
	q := fastSQL[op][shared][pair]
	if pc, ok := c.(driver.ConnPrepareContext); ok {
		st, err = pc.PrepareContext(ctx, q)
	} else {
		st, err = c.Prepare(q)
	}
	if err != nil {
		return nil, err
	}
	p.mu.Lock()
	cs[op][shared][pair] = st // cs may have been evicted meanwhile: harmless
	p.mu.Unlock()
	return st, nil
}

// forget drops c's statements (they stay prepared on the server until the
// session ends).
func (p *prepared) forget(c driver.Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, ok := p.conns[c]; !ok {
		return
	}
	delete(p.conns, c)
	for i, x := range p.fifo {
		if x == c {
			p.fifo = append(p.fifo[:i], p.fifo[i+1:]...)
			break
		}
	}
}

// execStmt runs a driver statement with args.
func execStmt(ctx context.Context, st driver.Stmt, args []driver.NamedValue) (driver.Result, error) {
	if se, ok := st.(driver.StmtExecContext); ok {
		return se.ExecContext(ctx, args)
	}
	vals := make([]driver.Value, len(args))
	for i, a := range args {
		vals[i] = a.Value
	}
	//lint:ignore SA1019 the driver has no StmtExecContext
	return st.Exec(vals)
}
