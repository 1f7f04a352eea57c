package kannukifile

import (
	"context"
	"errors"
	"os"
	"sync"
	"syscall"
	"time"
)

// inotifyMask: every close of the lock file (a release by Kannuki and by
// most tools, and the kernel closing a dying holder's files), and changes
// of its name or link count (removed or replaced).
const inotifyMask = syscall.IN_CLOSE_WRITE | syscall.IN_CLOSE_NOWRITE | syscall.IN_ATTRIB |
	syscall.IN_DELETE_SELF | syscall.IN_MOVE_SELF

// maxIdleInotify bounds the inotify instances a Backend keeps for reuse.
const maxIdleInotify = 8

// wakerPool keeps inotify instances for reuse. Closing an inotify instance
// costs the closer a kernel grace period (milliseconds), which would delay
// every handoff; removing a watch is cheap. So a waiter that is done
// removes its watch and puts the instance back; Backend.Close closes them.
type wakerPool struct {
	mu     sync.Mutex
	idle   []*inotify
	closed bool
	poll   bool // tests: wait by polling, as without inotify
}

// inotify is one inotify instance, registered with Go's network poller so
// that a read deadline interrupts a wait.
type inotify struct {
	f   *os.File
	rc  syscall.RawConn
	buf []byte
}

// newWaker returns a waker watching path with inotify, or polling when
// inotify is unavailable (the per-user instance limit, for one).
func (p *wakerPool) newWaker(ctx context.Context, path string) waker {
	if p.poll {
		return pollWaker{}
	}
	in := p.get()
	if in == nil {
		return pollWaker{}
	}
	wd, err := syscall.InotifyAddWatch(in.fd(), path, inotifyMask)
	if err != nil {
		p.put(in)
		return pollWaker{}
	}
	w := &inotifyWaker{pool: p, in: in, wd: wd}
	w.stop = context.AfterFunc(ctx, func() {
		w.mu.Lock()
		defer w.mu.Unlock()
		if !w.done {
			w.ended = true
			_ = in.f.SetReadDeadline(time.Unix(1, 0))
		}
	})
	return w
}

// get returns an idle instance with no pending events, or a new one; nil
// when inotify is unavailable.
func (p *wakerPool) get() *inotify {
	p.mu.Lock()
	if n := len(p.idle); n > 0 {
		in := p.idle[n-1]
		p.idle = p.idle[:n-1]
		p.mu.Unlock()
		_ = in.f.SetReadDeadline(time.Time{}) // a past deadline would stop drain from reading
		in.drain()                            // the IN_IGNORED of the last watch, and any late event
		return in
	}
	p.mu.Unlock()
	fd, err := syscall.InotifyInit1(syscall.IN_NONBLOCK | syscall.IN_CLOEXEC)
	if err != nil {
		return nil
	}
	f := os.NewFile(uintptr(fd), "inotify")
	rc, err := f.SyscallConn()
	if err != nil || f.SetReadDeadline(time.Time{}) != nil { // not in the poller: a wait could not be interrupted
		f.Close()
		return nil
	}
	return &inotify{f: f, rc: rc, buf: make([]byte, 4096)}
}

// put keeps in for reuse, or closes it when the pool is full or closed.
func (p *wakerPool) put(in *inotify) {
	p.mu.Lock()
	if !p.closed && len(p.idle) < maxIdleInotify {
		p.idle = append(p.idle, in)
		p.mu.Unlock()
		return
	}
	p.mu.Unlock()
	in.f.Close()
}

// close closes the idle instances; later waiters close theirs when done.
func (p *wakerPool) close() error {
	p.mu.Lock()
	idle := p.idle
	p.idle, p.closed = nil, true
	p.mu.Unlock()
	for _, in := range idle {
		in.f.Close()
	}
	return nil
}

func (in *inotify) fd() int {
	fd := -1
	_ = in.rc.Control(func(s uintptr) { fd = int(s) })
	return fd
}

// drain discards pending events without waiting.
func (in *inotify) drain() {
	_ = in.rc.Read(func(fd uintptr) bool {
		for {
			if n, err := syscall.Read(int(fd), in.buf); n <= 0 || err != nil {
				return true
			}
		}
	})
}

// inotifyWaker is one wait on one instance.
type inotifyWaker struct {
	pool *wakerPool
	in   *inotify
	wd   int
	stop func() bool

	mu     sync.Mutex
	ended  bool // ctx ended: the read deadline stays in the past
	done   bool // close was called: the instance is no longer ours
	broken bool // a read failed unexpectedly: sleep on timers from now on
}

func (w *inotifyWaker) sleep(ctx context.Context, until time.Time) (bool, error) {
	w.mu.Lock()
	if w.broken {
		w.mu.Unlock()
		return pollWaker{}.sleep(ctx, until)
	}
	if w.ended {
		w.mu.Unlock()
		return false, ctx.Err()
	}
	_ = w.in.f.SetReadDeadline(until)
	w.mu.Unlock()
	// One read drains every queued event: what they were does not matter,
	// only that the file may have been released.
	_, err := w.in.f.Read(w.in.buf)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, os.ErrDeadlineExceeded):
		if err := ctx.Err(); err != nil {
			return false, err
		}
		return false, nil
	}
	// Unexpected: poll from now on rather than risk missing events or
	// spinning on a failing read.
	w.mu.Lock()
	w.broken = true
	w.mu.Unlock()
	return true, nil
}

func (w *inotifyWaker) maxDelay() time.Duration {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.broken {
		return maxPollRecheck
	}
	return maxEventRecheck
}

func (w *inotifyWaker) close() {
	w.stop()
	w.mu.Lock() // an AfterFunc already running finishes first
	w.done = true
	broken := w.broken
	w.mu.Unlock()
	if _, err := syscall.InotifyRmWatch(w.in.fd(), uint32(w.wd)); err != nil || broken {
		w.in.f.Close() // its state is unknown: do not reuse it
		return
	}
	w.pool.put(w.in)
}
