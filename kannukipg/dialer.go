package kannukipg

import (
	"context"
	"database/sql/driver"
	"io"
	"net"
	"sync"
	"time"
)

// Dialer dials the connections of a lib/pq pool and remembers them, so
// that a Backend can watch the socket of a held lock (see the package
// documentation, "Socket watch"): lib/pq keeps its net.Conn to itself.
// It has the method set of lib/pq's Dialer and DialerContext; hand the
// same Dialer to the connector and to the Backend:
//
//	d := &kannukipg.Dialer{}
//	c, err := pq.NewConnector(dsn)
//	...
//	c.Dialer(d)
//	db := sql.OpenDB(c)
//	b := kannukipg.New(db, kannukipg.Options{Dialer: d})
//
// The Backend finds a connection's socket by the client port the server
// reports for its session (inet_client_port(), one query the first time a
// driver connection holds a lock). Behind a proxy or a NAT that changes
// the port, or on a Unix socket, no socket is found and the lock is
// watched by the keepalive alone. The zero value is ready; a Dialer may
// serve several pools. Without it, a Backend on lib/pq learns of a lost
// lock at the next keepalive (kannuki.Options.KeepaliveInterval) or the
// release.
type Dialer struct {
	// Net dials. Its zero value is what lib/pq uses by default.
	Net net.Dialer

	mu    sync.Mutex
	conns map[portPair][]*dialedConn // open TCP connections, by their ports
}

// portPair names a TCP connection by its local and remote ports.
type portPair struct{ local, remote int }

// Dial implements lib/pq's Dialer.
func (d *Dialer) Dial(network, address string) (net.Conn, error) {
	return d.DialContext(context.Background(), network, address)
}

// DialTimeout implements lib/pq's Dialer.
func (d *Dialer) DialTimeout(network, address string, timeout time.Duration) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return d.DialContext(ctx, network, address)
}

// DialContext implements lib/pq's DialerContext. It dials with Net and
// remembers a TCP connection until it is closed.
func (d *Dialer) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	c, err := d.Net.DialContext(ctx, network, address)
	if err != nil {
		return nil, err
	}
	la, lok := c.LocalAddr().(*net.TCPAddr)
	ra, rok := c.RemoteAddr().(*net.TCPAddr)
	if !lok || !rok {
		return c, nil // a Unix socket: the server reports no client port
	}
	dc := &dialedConn{Conn: c, d: d, ports: portPair{la.Port, ra.Port}}
	d.mu.Lock()
	if d.conns == nil {
		d.conns = make(map[portPair][]*dialedConn)
	}
	d.conns[dc.ports] = append(d.conns[dc.ports], dc)
	d.mu.Unlock()
	return dc, nil
}

// conn returns the open connection with these ports, or nil when there is
// none or more than one (two servers reached from one local port).
func (d *Dialer) conn(ports portPair) net.Conn {
	d.mu.Lock()
	defer d.mu.Unlock()
	if cs := d.conns[ports]; len(cs) == 1 {
		return cs[0]
	}
	return nil
}

// forget drops a closed connection.
func (d *Dialer) forget(c *dialedConn) {
	d.mu.Lock()
	defer d.mu.Unlock()
	cs := d.conns[c.ports]
	for i, x := range cs {
		if x == c {
			cs = append(cs[:i], cs[i+1:]...)
			break
		}
	}
	if len(cs) == 0 {
		delete(d.conns, c.ports)
	} else {
		d.conns[c.ports] = cs
	}
}

// lookup returns the socket of dc, a lib/pq driver connection dialed by
// d, asking the server for the session's ports; nil when it is not found.
// It runs inside Conn.Raw, on a connection that runs no other statement.
func (d *Dialer) lookup(dc any) net.Conn {
	q, ok := dc.(driver.QueryerContext)
	if !ok {
		return nil
	}
	rows, err := q.QueryContext(context.Background(), "SELECT inet_client_port(), inet_server_port()", nil)
	if err != nil {
		return nil
	}
	defer rows.Close()
	v := make([]driver.Value, 2)
	if err := rows.Next(v); err != nil {
		return nil
	}
	if err := rows.Next(make([]driver.Value, 2)); err != io.EOF {
		return nil
	}
	local, lok := v[0].(int64)
	remote, rok := v[1].(int64)
	if !lok || !rok {
		return nil // NULL: not a TCP session
	}
	return d.conn(portPair{int(local), int(remote)})
}

// dialedConn is a connection dialed by a Dialer: it forgets itself when
// closed, and shows the socket under it to the watch (NetConn).
type dialedConn struct {
	net.Conn
	d     *Dialer
	ports portPair
	once  sync.Once
}

// Close implements net.Conn.
func (c *dialedConn) Close() error {
	c.once.Do(func() { c.d.forget(c) })
	return c.Conn.Close()
}

// NetConn returns the dialed connection, as tls.Conn.NetConn does.
func (c *dialedConn) NetConn() net.Conn { return c.Conn }
