//go:build linux

package sockwatch

import (
	"net"
	"runtime"
	"testing"
	"time"
)

// pair returns the two ends of a loopback TCP connection.
func pair(t *testing.T) (client, server net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		accepted <- c
	}()
	client, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	server = <-accepted
	if server == nil {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { client.Close(); server.Close() })
	return client, server
}

func fired(w *Watch) chan struct{} {
	ch := make(chan struct{}, 8)
	w.Fire = func() { ch <- struct{}{} }
	return ch
}

func waitFire(t *testing.T, ch chan struct{}, want bool) {
	t.Helper()
	select {
	case <-ch:
		if !want {
			t.Fatal("fired, want silence")
		}
	case <-time.After(300 * time.Millisecond):
		if want {
			t.Fatal("did not fire")
		}
	}
}

func TestFiresOnData(t *testing.T) {
	var p Poller
	c, s := pair(t)
	var w Watch
	ch := fired(&w)
	if err := p.Arm(&w, c); err != nil {
		t.Fatal(err)
	}
	waitFire(t, ch, false) // silent while nothing comes
	if _, err := s.Write([]byte("E")); err != nil {
		t.Fatal(err)
	}
	waitFire(t, ch, true)
	if w.Armed() {
		t.Fatal("a fired watch is still armed")
	}
	// Nothing was read: the byte is still there for the driver.
	buf := make([]byte, 1)
	_ = c.SetReadDeadline(time.Now().Add(time.Second))
	if n, err := c.Read(buf); n != 1 || buf[0] != 'E' {
		t.Fatalf("read %d %q %v, want the byte the server sent", n, buf[:n], err)
	}
	// Re-armed on an idle socket, it is silent again, then fires on close.
	if err := p.Arm(&w, c); err != nil {
		t.Fatal(err)
	}
	waitFire(t, ch, false)
	s.Close()
	waitFire(t, ch, true)
	p.Disarm(&w)
}

func TestDisarmedIsSilent(t *testing.T) {
	var p Poller
	c, s := pair(t)
	var w Watch
	ch := fired(&w)
	if err := p.Arm(&w, c); err != nil {
		t.Fatal(err)
	}
	p.Disarm(&w)
	if p.Len() != 0 {
		t.Fatalf("Len %d after Disarm", p.Len())
	}
	_, _ = s.Write([]byte("x"))
	waitFire(t, ch, false)
}

// TestManyOneGoroutine arms 1,000 sockets: one goroutine serves them all,
// only the one that turned readable fires, and the goroutine ends once
// nothing is armed.
func TestManyOneGoroutine(t *testing.T) {
	p := Poller{Delay: -1} // the queue's timer goroutine would blur the count
	const n = 1000
	before := runtime.NumGoroutine()
	ws := make([]Watch, n)
	servers := make([]net.Conn, n)
	hits := make(chan int, n)
	for i := range ws {
		c, s := pair(t)
		servers[i] = s
		ws[i].Fire = func() { hits <- i }
		if err := p.Arm(&ws[i], c); err != nil {
			t.Fatal(err)
		}
	}
	// One goroutine serves them all; the slack is for pair's accept
	// goroutines still on their way out, never one per socket.
	if g := runtime.NumGoroutine() - before; g > 3 {
		t.Fatalf("%d goroutines for %d watched sockets, want 1", g, n)
	}
	servers[n/2].Close()
	select {
	case i := <-hits:
		if i != n/2 {
			t.Fatalf("watch %d fired, want %d", i, n/2)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no fire")
	}
	for i := range ws {
		p.Disarm(&ws[i])
	}
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if g := runtime.NumGoroutine() - before; g > 0 {
		t.Fatalf("%d goroutines left after every watch was disarmed", g)
	}
	// And it starts again when needed.
	c, s := pair(t)
	var w Watch
	ch := fired(&w)
	if err := p.Arm(&w, c); err != nil {
		t.Fatal(err)
	}
	s.Close()
	waitFire(t, ch, true)
	p.Disarm(&w)
}

func TestUnsupported(t *testing.T) {
	var p Poller
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	var w Watch
	if err := p.Arm(&w, a); err != ErrUnsupported {
		t.Fatalf("Arm(net.Pipe) = %v, want ErrUnsupported", err)
	}
}

// TestDelay: a watch disarmed within the delay never reaches epoll (no
// registration, no goroutine); one held past it fires for news that came
// during the delay; a negative delay registers at once.
func TestDelay(t *testing.T) {
	p := Poller{Delay: time.Hour}
	c, s := pair(t)
	var w Watch
	ch := fired(&w)
	before := runtime.NumGoroutine()
	for range 100 {
		if err := p.Arm(&w, c); err != nil {
			t.Fatal(err)
		}
		if !w.Armed() {
			t.Fatal("a watch waiting out its delay does not count as armed")
		}
		p.Disarm(&w)
	}
	if p.Len() != 0 || p.running || runtime.NumGoroutine() > before {
		t.Fatalf("a watch disarmed within its delay reached epoll: Len %d, running %v", p.Len(), p.running)
	}

	var q Poller // DefaultDelay
	var w2 Watch
	ch2 := fired(&w2)
	if err := q.Arm(&w2, c); err != nil {
		t.Fatal(err)
	}
	_, _ = s.Write([]byte("E")) // news within the delay
	waitFire(t, ch2, true)
	q.Disarm(&w2)

	_ = ch
	now := Poller{Delay: -1}
	var w3 Watch
	ch3 := fired(&w3)
	if err := now.Arm(&w3, c); err != nil {
		t.Fatal(err)
	}
	if now.Len() != 1 {
		t.Fatalf("Len %d right after Arm with no delay, want 1", now.Len())
	}
	waitFire(t, ch3, true) // the byte is still unread
	now.Disarm(&w3)
}

// TestArmDisarmStorm arms and disarms one watch over and over around its
// delay, from the owner's goroutine, while the queue's timer arms it: the
// queue must stay sound (a node pushed twice would loop forever).
func TestArmDisarmStorm(t *testing.T) {
	p := Poller{Delay: 50 * time.Microsecond}
	c, _ := pair(t)
	var w Watch
	w.Fire = func() {}
	deadline := time.Now().Add(500 * time.Millisecond)
	n := 0
	for time.Now().Before(deadline) {
		if err := p.Arm(&w, c); err != nil {
			t.Fatal(err)
		}
		if n%3 == 0 {
			time.Sleep(time.Duration(n%7) * 20 * time.Microsecond)
		}
		p.Disarm(&w)
		n++
	}
	if w.Armed() || p.Len() != 0 {
		t.Fatalf("after %d cycles: armed %v, Len %d", n, w.Armed(), p.Len())
	}
}
