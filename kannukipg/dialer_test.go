package kannukipg

import (
	"net"
	"testing"
)

// TestDialerRemembers: a Dialer finds each open TCP connection it dialed
// by its ports, shows the socket under it, and forgets it once closed.
func TestDialerRemembers(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	var d Dialer
	ports := func(c net.Conn) portPair {
		return portPair{c.LocalAddr().(*net.TCPAddr).Port, c.RemoteAddr().(*net.TCPAddr).Port}
	}
	a, err := d.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	_, err = d.DialTimeout("tcp", ln.Addr().String(), 0)
	if err == nil {
		t.Fatal("DialTimeout with no time left succeeded")
	}
	b, err := d.DialContext(t.Context(), "tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []net.Conn{a, b} {
		if got := d.conn(ports(c)); got != c {
			t.Fatalf("conn(%v) = %v, want %v", ports(c), got, c)
		}
		if _, ok := c.(interface{ NetConn() net.Conn }).NetConn().(*net.TCPConn); !ok {
			t.Fatal("NetConn is not the TCP socket")
		}
	}
	pa := ports(a)
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	_ = a.Close() // twice: forgotten once
	if got := d.conn(pa); got != nil {
		t.Fatalf("a closed connection is still found: %v", got)
	}
	if got := d.conn(ports(b)); got != b {
		t.Fatal("closing one connection forgot another")
	}
	b.Close()
	if len(d.conns) != 0 {
		t.Fatalf("%d port pairs remembered after every connection closed", len(d.conns))
	}
}
