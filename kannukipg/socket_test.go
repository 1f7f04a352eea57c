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
	fakePgConn     struct {
		nc  net.Conn
		pid uint32
	}
	oddDriverConn struct{}
)

func (d *fakeDriverConn) Conn() *fakePgxConn { return d.c }
func (c *fakePgxConn) PgConn() *fakePgConn   { return c.pc }
func (p *fakePgConn) Conn() net.Conn         { return p.nc }
func (p *fakePgConn) PID() uint32            { return p.pid }
func (oddDriverConn) Conn(int) *fakePgxConn  { return nil }
func (oddDriverConn) PgConn() (int, error)   { return 0, nil }

// TestNetConnOf: the socket is found through pgx/stdlib's method chain,
// and anything else (lib/pq, a nil link, methods of another shape) gives
// nil, so the Backend keeps its cancel-based bound.
func TestNetConnOf(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	if got := netConnOf(&fakeDriverConn{&fakePgxConn{&fakePgConn{nc: a}}}); got != a {
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

// TestAnnouncedPID: the process id announced at connect is read through
// the same chain; a driver without it (lib/pq) does not tell.
func TestAnnouncedPID(t *testing.T) {
	if pid, told := announcedPID(&fakeDriverConn{&fakePgxConn{&fakePgConn{pid: 4242}}}); pid != 4242 || !told {
		t.Errorf("pgx-shaped chain: got %d, %v; want 4242, true", pid, told)
	}
	for name, dc := range map[string]any{
		"nil *PgConn": &fakeDriverConn{&fakePgxConn{}},
		"other shape": oddDriverConn{},
		"nil":         nil,
	} {
		if pid, told := announcedPID(dc); told {
			t.Errorf("%s: got %d, told; want not told", name, pid)
		}
	}
}
