package pgsql

import (
	"context"
	"database/sql"
	"errors"
	"net"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kannuki-go/kannuki/store"

	"github.com/kannuki-go/kannuki"
	"github.com/kannuki-go/kannuki/internal/testdb"
	"github.com/kannuki-go/kannuki/kannukipg"
)

// stallProxy forwards TCP connections to PostgreSQL. stall makes the
// connections open at that moment stop passing on what clients send: to
// those clients the server seems to have stopped answering, while new
// connections (pgx's cancel requests, fresh dials) still go through. A
// connection closed on either side is closed on both, so the server ends
// the session (and frees its locks) when the client gives it up.
type stallProxy struct {
	ln     net.Listener
	target string
	wg     sync.WaitGroup
	mu     sync.Mutex
	conns  []net.Conn
	flags  []*atomic.Bool // one per proxied connection: stalled
}

// stall stalls the connections open now; unstall lets them all through.
func (p *stallProxy) stall()   { p.setStalled(true) }
func (p *stallProxy) unstall() { p.setStalled(false) }

func (p *stallProxy) setStalled(v bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, f := range p.flags {
		f.Store(v)
	}
}

func newStallProxy(t *testing.T) *stallProxy {
	t.Helper()
	u, err := url.Parse(testdb.PostgresDSN())
	if err != nil || u.Host == "" {
		t.Skipf("KANNUKI_PG_DSN is not a URL with a host; the stall proxy needs one")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &stallProxy{ln: ln, target: u.Host}
	p.wg.Add(1)
	go p.serve()
	t.Cleanup(p.close)
	return p
}

// dsn is the test database's DSN through the proxy.
func (p *stallProxy) dsn(t *testing.T) string {
	u, _ := url.Parse(testdb.PostgresDSN())
	u.Host = p.ln.Addr().String()
	return u.String()
}

func (p *stallProxy) serve() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		s, err := net.Dial("tcp", p.target)
		if err != nil {
			c.Close()
			continue
		}
		stalled := new(atomic.Bool)
		p.mu.Lock()
		p.conns = append(p.conns, c, s)
		p.flags = append(p.flags, stalled)
		p.mu.Unlock()
		p.wg.Add(2)
		go p.pipe(s, c, stalled)
		go p.pipe(c, s, nil)
	}
}

// pipe copies from src to dst, dropping the bytes once stalled (nil: never).
func (p *stallProxy) pipe(dst, src net.Conn, stalled *atomic.Bool) {
	defer p.wg.Done()
	defer dst.Close()
	defer src.Close()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 && (stalled == nil || !stalled.Load()) {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return // EOF or a closed side: close both
		}
	}
}

func (p *stallProxy) close() {
	p.ln.Close()
	p.mu.Lock()
	for _, c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}

// TestFastStatementsBounded: when the server stops answering, a try and an
// unlock give up after ReleaseTimeout instead of hanging (pgx/stdlib, where
// the Backend bounds them; lib/pq relies on TCP keepalive, see fast), the
// connection is destroyed, and the server frees the lock.
func TestFastStatementsBounded(t *testing.T) {
	obs := newObserver(t)
	p := newStallProxy(t)
	db, err := sql.Open("pgx", p.dsn(t))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.PingContext(ctxT(t, 10*time.Second)); err != nil {
		testdb.Unavailable(t, "PostgreSQL through the test proxy", err)
	}
	const bound = 300 * time.Millisecond
	b := kannukipg.New(db, kannukipg.Options{ReleaseTimeout: bound})
	ctx := context.Background()

	k := uniqueKey(t, "unlock")
	l, err := b.Acquire(ctx, k, store.Request{Wait: 0})
	if err != nil {
		t.Fatal(err)
	}
	p.stall()
	start := time.Now()
	done := make(chan error, 1)
	go func() { done <- l.Release(ctx) }()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("Release through a stalled connection returned nil")
		}
		t.Logf("Release after %s: %v", time.Since(start).Round(time.Millisecond), err)
	case <-time.After(30 * time.Second):
		t.Fatal("Release through a stalled connection still running after 30s")
	}
	// pgx closes a connection whose statement it interrupted only after
	// the server saw its Terminate (or 15 s); let that through.
	p.unstall()
	waitFreed(t, obs, k)

	// A connection in the pool, idle, then stalled: the next try runs on
	// it. Two cycles first, so that pgx/stdlib, which pings a connection
	// it has not reset for a second, does not ping it (the ping would hang
	// in the pool instead, where ConnWait bounds it).
	for range 2 {
		warm, err := b.Acquire(ctx, uniqueKey(t, "warm"), store.Request{Wait: 0})
		if err != nil {
			t.Fatal(err)
		}
		if err := warm.Release(ctx); err != nil {
			t.Fatal(err)
		}
	}
	p.stall()

	k2 := uniqueKey(t, "try")
	start = time.Now()
	go func() {
		l, err := b.Acquire(ctx, k2, store.Request{Wait: 0})
		if l != nil {
			_ = l.Release(ctx)
		}
		done <- err
	}()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("a try through a stalled connection succeeded")
		}
		if !strings.Contains(err.Error(), "try lock") {
			t.Fatalf("the try did not fail on its own bound: %v", err)
		}
		t.Logf("try after %s: %v", time.Since(start).Round(time.Millisecond), err)
	case <-time.After(30 * time.Second):
		t.Fatal("a try through a stalled connection still running after 30s")
	}
	p.unstall()
	waitFreed(t, obs, k2)
}

// waitFreed fails t unless k is free on the server within 20 s.
func waitFreed(t *testing.T, obs *observer, k store.Key) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for obs.held(t, k) != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("lock %q still held on the server 20s after its connection was given up", k.String)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestConnWaitBoundsPoolRequest: a pool request that finds an idle
// connection but hangs on it (pgx/stdlib pings a connection idle for over
// a second before reusing it, and the server stopped answering) gives up
// after ConnWait, through the Backend's watchdog rather than a timer of
// its own, and reports that no connection was to be had.
func TestConnWaitBoundsPoolRequest(t *testing.T) {
	p := newStallProxy(t)
	db, err := sql.Open("pgx", p.dsn(t))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	if err := db.PingContext(ctxT(t, 10*time.Second)); err != nil {
		testdb.Unavailable(t, "PostgreSQL through the test proxy", err)
	}
	const connWait = 300 * time.Millisecond
	b := kannukipg.New(db, kannukipg.Options{ConnWait: connWait})
	time.Sleep(1100 * time.Millisecond) // idle long enough to be pinged on reuse
	p.stall()
	defer p.unstall()

	// A context that can end takes the path that bounds the request
	// with the watchdog: the pool has an idle connection to give.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		l, err := b.Acquire(ctx, uniqueKey(t, "connwait"), store.Request{Wait: 0})
		if l != nil {
			_ = l.Release(context.Background())
		}
		done <- err
	}()
	select {
	case err := <-done:
		if !errors.Is(err, kannukipg.ErrNoConnection) || !errors.Is(err, kannuki.ErrNotAcquired) {
			t.Fatalf("try through a pool connection that hangs: %v; want ErrNoConnection", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("a pool request on a hanging connection still running after 30s")
	}
}
