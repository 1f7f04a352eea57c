package kannukimysql

import (
	"context"
	"net"
	"sync"
	"syscall"
)

// Dialer makes the network connections of a MySQL driver that lets the
// application dial (go-sql-driver/mysql: mysql.RegisterDialContext, or
// Config.DialFunc) and remembers each one by the session id the server
// announced in its greeting, so that a Backend given the Dialer
// (Options.Dialer) can watch the socket of a connection that holds a lock
// (see "Socket watch" in the package documentation). The driver does not
// expose its connections otherwise.
//
//	d := &kannukimysql.Dialer{}
//	mysql.RegisterDialContext("tcp", d.DialContext)
//
// The zero value is ready to use. One Dialer may serve any number of pools
// and Backends. It reads nothing from a connection itself: it only looks at
// the greeting the driver reads through it, and forgets a connection when
// the driver closes it.
type Dialer struct {
	// Dial makes the connection. nil means a net.Dialer with its defaults
	// (TCP keepalive on).
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)

	mu    sync.Mutex
	conns map[uint32][]*dialedConn // by the greeting's session id
}

// DialContext dials addr over TCP: the function to register with
// go-sql-driver/mysql's RegisterDialContext.
func (d *Dialer) DialContext(ctx context.Context, addr string) (net.Conn, error) {
	return d.DialNetwork(ctx, "tcp", addr)
}

// DialNetwork dials addr over network ("tcp", "unix"): the signature of
// go-sql-driver/mysql's Config.DialFunc.
func (d *Dialer) DialNetwork(ctx context.Context, network, addr string) (net.Conn, error) {
	var c net.Conn
	var err error
	if d.Dial != nil {
		c, err = d.Dial(ctx, network, addr)
	} else {
		var nd net.Dialer
		c, err = nd.DialContext(ctx, network, addr)
	}
	if err != nil {
		return nil, err
	}
	dc := &dialedConn{Conn: c, d: d}
	if _, ok := c.(syscall.Conn); ok {
		// The driver checks a pooled connection's liveness through
		// syscall.Conn; it must see the socket's, as without the Dialer.
		return &dialedSockConn{dc}, nil
	}
	return dc, nil
}

// lookup returns the connection the Dialer made for session id, or nil
// when it made none, or more than one (two servers that gave the same
// id): nothing is watched then.
func (d *Dialer) lookup(id int64) net.Conn {
	if d == nil || id < 0 || id > 1<<32-1 {
		return nil
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if cs := d.conns[uint32(id)]; len(cs) == 1 {
		return cs[0].Conn
	}
	return nil
}

// add records c under session id.
func (d *Dialer) add(c *dialedConn, id uint32) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if c.closed {
		return
	}
	if d.conns == nil {
		d.conns = make(map[uint32][]*dialedConn)
	}
	c.id, c.listed = id, true
	d.conns[id] = append(d.conns[id], c)
}

// remove forgets c; it is being closed.
func (d *Dialer) remove(c *dialedConn) {
	d.mu.Lock()
	defer d.mu.Unlock()
	c.closed = true
	if !c.listed {
		return
	}
	c.listed = false
	cs := d.conns[c.id]
	for i, e := range cs {
		if e == c {
			cs = append(cs[:i], cs[i+1:]...)
			break
		}
	}
	if len(cs) == 0 {
		delete(d.conns, c.id)
	} else {
		d.conns[c.id] = cs
	}
}

// maxGreeting bounds the bytes kept while the greeting comes in pieces:
// its session id is within the first 4+1+256+1+4 bytes.
const maxGreeting = 266

// dialedConn is a connection the Dialer made. Read passes everything
// through; until the greeting's session id is known it also looks at what
// the driver read.
type dialedConn struct {
	net.Conn
	d *Dialer

	// Used by the driver's reading goroutine only.
	greeted bool   // the session id is known, or will never be
	head    []byte // the greeting so far, when it came in pieces

	// Guarded by d.mu.
	id     uint32
	listed bool
	closed bool
}

// Read implements net.Conn.
func (c *dialedConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if !c.greeted && n > 0 {
		c.greet(p[:n])
	}
	return n, err
}

// Close implements net.Conn.
func (c *dialedConn) Close() error {
	c.d.remove(c)
	return c.Conn.Close()
}

// greet takes in the next bytes of the server's greeting.
func (c *dialedConn) greet(b []byte) {
	data := b
	if c.head != nil {
		c.head = append(c.head, b...)
		data = c.head
	}
	id, ok, more := greetingID(data)
	if more && len(data) < maxGreeting {
		if c.head == nil {
			c.head = append([]byte(nil), b...)
		}
		return
	}
	c.greeted, c.head = true, nil
	if ok && !more {
		c.d.add(c, id)
	}
}

// dialedSockConn is a dialedConn over a socket: it has the socket's
// SyscallConn, as the driver expects of a TCP or Unix connection.
type dialedSockConn struct{ *dialedConn }

// SyscallConn implements syscall.Conn.
func (c *dialedSockConn) SyscallConn() (syscall.RawConn, error) {
	return c.Conn.(syscall.Conn).SyscallConn()
}

// greetingID parses the session id out of the start of a MySQL protocol
// stream: the first packet (3-byte length, sequence 0) is the server's
// handshake, protocol version 10, the server version ending in NUL, then
// the session id, 4 bytes little-endian. more reports that data is too
// short to tell; ok is false for anything else (an error packet such as
// "Too many connections", another protocol).
func greetingID(data []byte) (id uint32, ok, more bool) {
	if len(data) < 5 {
		return 0, false, true
	}
	size := int(data[0]) | int(data[1])<<8 | int(data[2])<<16
	if data[3] != 0 || data[4] != 10 {
		return 0, false, false
	}
	payload := data[4:]
	if len(payload) > size {
		payload = payload[:size]
	}
	for i := 1; i < len(payload); i++ {
		if payload[i] != 0 {
			continue
		}
		if len(payload) < i+5 {
			return 0, false, len(data)-4 < size
		}
		p := payload[i+1 : i+5]
		return uint32(p[0]) | uint32(p[1])<<8 | uint32(p[2])<<16 | uint32(p[3])<<24, true, false
	}
	return 0, false, len(data)-4 < size
}
