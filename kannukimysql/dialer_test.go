package kannukimysql

import "testing"

// greeting is the start of a MariaDB 10.11 handshake packet for session id.
func greeting(id uint32) []byte {
	payload := []byte{10}
	payload = append(payload, "5.5.5-10.11.19-MariaDB-0+deb12u1"...)
	payload = append(payload, 0, byte(id), byte(id>>8), byte(id>>16), byte(id>>24))
	payload = append(payload, "authdata\x00rest of the packet"...)
	n := len(payload)
	return append([]byte{byte(n), byte(n >> 8), byte(n >> 16), 0}, payload...)
}

func TestGreetingID(t *testing.T) {
	g := greeting(0x01020304)
	id, ok, more := greetingID(g)
	if id != 0x01020304 || !ok || more {
		t.Fatalf("whole greeting: %#x %v %v", id, ok, more)
	}
	for n := range 4 + 1 + 32 + 1 + 4 {
		if _, ok, more := greetingID(g[:n]); ok || !more {
			t.Fatalf("first %d bytes: ok %v more %v, want more", n, ok, more)
		}
	}
	// An error packet ("Too many connections") and another protocol.
	errPkt := []byte{23, 0, 0, 0, 0xff, 0x10, 0x04, '#', '0', '8', '0', '0', '4', 'T', 'o', 'o'}
	if _, ok, more := greetingID(errPkt); ok || more {
		t.Fatalf("error packet: ok %v more %v", ok, more)
	}
	if _, ok, more := greetingID([]byte("HTTP/1.1 400 Bad Request\r\n")); ok || more {
		t.Fatalf("HTTP: ok %v more %v", ok, more)
	}
}

// TestGreetPieces: a greeting read in pieces is put together; a
// connection is listed under its session id until it is closed.
func TestGreetPieces(t *testing.T) {
	d := &Dialer{}
	c := &dialedConn{d: d}
	g := greeting(77)
	for i := 0; i < len(g); i += 3 {
		c.greet(g[i:min(i+3, len(g))])
		if c.greeted {
			break
		}
	}
	if !c.greeted || !c.listed || c.id != 77 {
		t.Fatalf("greeted %v listed %v id %d", c.greeted, c.listed, c.id)
	}
	if d.conns[77][0] != c {
		t.Fatal("not listed under 77")
	}
	// A second connection with the same id (another server): neither is
	// watched.
	c2 := &dialedConn{d: d}
	c2.greet(g)
	if d.lookup(77) != nil {
		t.Fatal("lookup of an ambiguous id found a connection")
	}
	d.remove(c2)
	d.remove(c)
	if len(d.conns) != 0 {
		t.Fatalf("%d ids left after close", len(d.conns))
	}
}
