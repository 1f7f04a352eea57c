//go:build linux

package sockwatch

import (
	"errors"
	"net"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/kannuki-go/kannuki/internal/due"
)

// linger is how long the Poller's goroutine outlives its last watch, so
// that a lock taken and released over and over does not start a goroutine
// each time, while a Poller nobody uses holds nothing (goleak clean).
const linger = 100 * time.Millisecond

// events watched: readable, peer closed its side, and (always reported)
// error and hang-up. One-shot: a fired watch stays quiet until re-armed.
const events = syscall.EPOLLIN | syscall.EPOLLRDHUP | syscall.EPOLLONESHOT

// Poller watches sockets (see the package doc). The zero value is ready;
// it needs no Close: once nothing has been watched for a moment its
// goroutine ends and its epoll instance is closed.
type Poller struct {
	// Delay is how long Arm waits before the socket is watched: 0 means
	// DefaultDelay, negative watches at once. Set it before the first Arm.
	Delay time.Duration

	mu      sync.Mutex
	epfd    int      // the epoll instance while running
	ep      *os.File // epfd, parked on by the goroutine
	running bool
	idle    bool // the goroutine was told to end if nothing is armed by its deadline
	watches map[uint64]*Watch
	next    uint64
	queue   due.Queue // watches waiting out Delay: no timer per held lock (the told-at-once issue's bar)
}

// Arm watches c's socket for w, after the Poller's Delay. c must be idle:
// no statement in flight. Arming an armed watch re-arms it. It returns
// ErrUnsupported when c has no socket that can be watched (checked at
// once, whatever the delay).
func (p *Poller) Arm(w *Watch, c net.Conn) error {
	if !watchable(c) {
		return ErrUnsupported
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if w.p != nil && w.p != p {
		return errors.New("sockwatch: watch armed on another poller")
	}
	d := p.Delay
	if d == 0 {
		d = DefaultDelay
	}
	if d < 0 {
		return p.armLocked(w, c)
	}
	if p.queue.Fire == nil {
		p.queue.Fire = armDue
	}
	// Always off the queue before a push: a node pushed twice would
	// corrupt the queue, and a fired node can be back on it already.
	p.queue.Remove(&w.node)
	if w.p == nil {
		// Written once: armDue reads them before it takes p.mu (the
		// queue's mutex orders this first write before any Fire).
		w.p, w.node.Owner = p, w
	}
	w.conn, w.pending = c, true
	p.queue.Push(&w.node, time.Now().Add(d))
	return nil
}

// armDue arms a watch whose delay is over, unless it was disarmed
// meanwhile. It runs on the queue's timer goroutine.
func armDue(n *due.Node) {
	w := n.Owner.(*Watch)
	p := w.p
	p.mu.Lock()
	defer p.mu.Unlock()
	if !w.pending {
		return
	}
	p.queue.Remove(&w.node) // re-pushed by an Arm since it fell due
	c := w.conn
	w.pending, w.conn = false, nil
	_ = p.armLocked(w, c) // a failure leaves the socket to the keepalive
}

// armLocked registers (or re-arms) w's socket now. Caller holds p.mu.
func (p *Poller) armLocked(w *Watch, c net.Conn) error {
	rc, err := rawConnOf(c)
	if err != nil {
		return err
	}
	if err := p.startLocked(); err != nil {
		return err
	}
	op := syscall.EPOLL_CTL_ADD
	if w.p == p && w.id != 0 && p.watches[w.id] == w {
		op = syscall.EPOLL_CTL_MOD // registered: re-arm the one-shot
	} else {
		p.next++
		w.id = p.next
	}
	var ctlErr error
	cerr := rc.Control(func(fd uintptr) {
		ev := syscall.EpollEvent{Events: events}
		setID(&ev, w.id)
		ctlErr = syscall.EpollCtl(p.epfd, op, int(fd), &ev)
		if ctlErr == syscall.EEXIST { // the fd was registered under an older id
			ctlErr = syscall.EpollCtl(p.epfd, syscall.EPOLL_CTL_MOD, int(fd), &ev)
		}
		w.fd = int(fd)
	})
	if cerr != nil {
		return cerr
	}
	if ctlErr != nil {
		return ctlErr
	}
	if w.p == nil {
		w.p = p
	}
	w.armed = true
	p.watches[w.id] = w
	return nil
}

// Disarm stops watching w's socket. After it returns, Fire is not called
// for a readiness that comes later; one that came just before may still
// run (see Watch.Fire). Disarming an unarmed watch does nothing.
func (p *Poller) Disarm(w *Watch) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if w.p != p {
		return
	}
	p.queue.Remove(&w.node) // still waiting out the delay: no system call
	w.pending, w.conn = false, nil
	if p.watches[w.id] != w {
		return
	}
	delete(p.watches, w.id)
	w.armed = false
	if p.running {
		// The socket is still open (the rule: disarm before closing), so
		// this removes exactly its registration. ENOENT: the kernel
		// dropped it with a socket closed behind our back.
		_ = syscall.EpollCtl(p.epfd, syscall.EPOLL_CTL_DEL, w.fd, nil)
		if len(p.watches) == 0 && !p.idle {
			p.idle = true
			_ = p.ep.SetReadDeadline(time.Now().Add(linger))
		}
	}
}

// Armed reports whether w is armed, or waiting out the delay to be.
func (w *Watch) Armed() bool {
	if w.p == nil {
		return false
	}
	w.p.mu.Lock()
	defer w.p.mu.Unlock()
	return w.armed || w.pending
}

// Len is the number of registered watches (tests).
func (p *Poller) Len() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.watches)
}

// startLocked makes the epoll instance and starts the goroutine if they
// are not there. Caller holds p.mu.
func (p *Poller) startLocked() error {
	if p.idle {
		p.idle = false
		_ = p.ep.SetReadDeadline(time.Time{})
	}
	if p.running {
		return nil
	}
	fd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		return os.NewSyscallError("epoll_create1", err)
	}
	if err := syscall.SetNonblock(fd, true); err != nil {
		syscall.Close(fd)
		return os.NewSyscallError("setnonblock", err)
	}
	ep := os.NewFile(uintptr(fd), "sockwatch-epoll")
	rc, err := ep.SyscallConn()
	if err != nil {
		ep.Close()
		return err
	}
	if p.watches == nil {
		p.watches = make(map[uint64]*Watch)
	}
	p.epfd, p.ep, p.running = fd, ep, true
	go p.loop(ep, rc)
	return nil
}

// loop waits for readiness on the epoll instance in the runtime's poller
// and fires the watches that became ready. It ends, closing the instance,
// when nothing was armed for linger.
func (p *Poller) loop(ep *os.File, rc syscall.RawConn) {
	buf := make([]syscall.EpollEvent, 64)
	for {
		var n int
		var werr error
		err := rc.Read(func(fd uintptr) bool {
			n, werr = syscall.EpollWait(int(fd), buf, 0)
			if werr == syscall.EINTR {
				werr = nil
				return false
			}
			return n > 0 || werr != nil
		})
		if err != nil || werr != nil {
			if p.stopIfIdle(ep) {
				return
			}
			if err == nil || !errors.Is(err, os.ErrDeadlineExceeded) {
				time.Sleep(time.Millisecond) // an unexpected error: do not spin
			}
			continue
		}
		p.dispatch(buf[:n])
	}
}

// stopIfIdle ends the Poller's run when nothing is armed.
func (p *Poller) stopIfIdle(ep *os.File) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.watches) > 0 {
		p.idle = false
		_ = ep.SetReadDeadline(time.Time{})
		return false
	}
	p.running, p.idle, p.ep, p.epfd = false, false, nil, -1
	ep.Close()
	return true
}

// dispatch fires the watches of ready events. A fired watch is no longer
// armed (one-shot) but stays registered until Disarm or a re-Arm.
func (p *Poller) dispatch(evs []syscall.EpollEvent) {
	p.mu.Lock()
	var fire []func()
	for i := range evs {
		w := p.watches[idOf(&evs[i])]
		if w == nil || !w.armed {
			continue
		}
		w.armed = false
		if w.Fire != nil {
			fire = append(fire, w.Fire)
		}
	}
	p.mu.Unlock()
	for _, f := range fire {
		go f()
	}
}

// setID and idOf keep a watch's id in the event's data (the Fd and Pad
// fields, 8 bytes together), never a pointer the collector cannot see.
func setID(ev *syscall.EpollEvent, id uint64) {
	ev.Fd = int32(uint32(id))
	ev.Pad = int32(uint32(id >> 32))
}

func idOf(ev *syscall.EpollEvent) uint64 {
	return uint64(uint32(ev.Fd)) | uint64(uint32(ev.Pad))<<32
}
