package kannukipg

import (
	"net"
	"testing"
)

// Stand-ins for pgx/stdlib's chain: driver connection -> *pgx.Conn ->
// *pgconn.PgConn -> net.Conn.
type (
	fakeDriverConn struct{ c *fakePgxConn }
	fakePgxConn    struct{ pc *fakePgConn }
	fakePgConn     struct{ nc net.Conn }
	oddDriverConn  struct{}
)

func (d *fakeDriverConn) Conn() *fakePgxConn { return d.c }
func (c *fakePgxConn) PgConn() *fakePgConn   { return c.pc }
func (p *fakePgConn) Conn() net.Conn         { return p.nc }
func (oddDriverConn) Conn(int) *fakePgxConn  { return nil }
func (oddDriverConn) PgConn() (int, error)   { return 0, nil }

// TestNetConnOf: the socket is found through pgx/stdlib's method chain,
// and anything else (lib/pq, a nil link, methods of another shape) gives
// nil, so the Backend keeps its cancel-based bound.
func TestNetConnOf(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	if got := netConnOf(&fakeDriverConn{&fakePgxConn{&fakePgConn{a}}}); got != a {
		t.Errorf("pgx-shaped chain: got %v, want the socket", got)
	}
	for name, dc := range map[string]any{
		"nil *pgx.Conn": &fakeDriverConn{},
		"nil *PgConn":   &fakeDriverConn{&fakePgxConn{}},
		"nil net.Conn":  &fakeDriverConn{&fakePgxConn{&fakePgConn{}}},
		"other shape":   oddDriverConn{},
		"no methods":    struct{}{},
		"nil":           nil,
	} {
		if got := netConnOf(dc); got != nil {
			t.Errorf("%s: got %v, want nil", name, got)
		}
	}
}
