package chaos

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"syscall"
)

// The ledger is how the overlap checker sees two holders of one key at
// once, across goroutines and processes, outside the lock under test.
//
// Timestamps cannot do it: each process's monotonic clock is its own, and
// comparing wall-clock intervals needs a tolerance that hides exactly the
// short overlaps worth finding. Instead every key has a marker, a 64-byte
// record in a file of the run directory that names the holder inside the
// critical section. A holder swaps its id in as the first thing fn does
// (enter) and takes it out, only if it is still its own, as the last
// thing fn does (leave). Both are atomic: a per-key mutex orders the
// goroutines of one process (flock would not: it is per open file
// description, which the goroutines share) and flock(2) orders processes;
// the kernel drops the flock of a process that dies, so SIGKILL cannot
// wedge the ledger.
//
// enter returns the previous marker. It is empty unless someone else is
// (or claims to be) inside: a killed holder leaves its marker behind, and
// so does a holder whose lock was lost but which has not been told yet.
// The verdict is left to the end of the run (see reconcile), when every
// holding's outcome is known: finding holder X's marker is an overlap
// unless X was told its lock was lost (its call returned ErrLockLost) or X
// died (its process was killed with X inside). In other words the checker
// allows exactly what no lock service can avoid, a holder that has lost
// its lock without knowing it yet, and only if it is told afterwards.
type ledger struct {
	dir   string
	mu    sync.Mutex
	files map[string]*ledgerFile
}

type ledgerFile struct {
	mu sync.Mutex
	fd int
}

const markerSize = 64

func newLedger(dir string) *ledger {
	return &ledger{dir: dir, files: map[string]*ledgerFile{}}
}

// file returns key's marker file, opened once per process.
func (l *ledger) file(key string) (*ledgerFile, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if f := l.files[key]; f != nil {
		return f, nil
	}
	// The keys of a run are "k0", "k1", ...: safe file names.
	fd, err := syscall.Open(filepath.Join(l.dir, "marker-"+key), syscall.O_RDWR|syscall.O_CREAT|syscall.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("ledger: %w", err)
	}
	f := &ledgerFile{fd: fd}
	l.files[key] = f
	return f, nil
}

// swap runs f on key's marker under both locks and writes back what f
// returns.
func (l *ledger) swap(key string, f func(cur string) (next string, write bool)) (string, error) {
	lf, err := l.file(key)
	if err != nil {
		return "", err
	}
	lf.mu.Lock()
	defer lf.mu.Unlock()
	for {
		err = syscall.Flock(lf.fd, syscall.LOCK_EX)
		if err != syscall.EINTR {
			break
		}
	}
	if err != nil {
		return "", fmt.Errorf("ledger: flock: %w", err)
	}
	defer syscall.Flock(lf.fd, syscall.LOCK_UN)
	var buf [markerSize]byte
	n, err := syscall.Pread(lf.fd, buf[:], 0)
	if err != nil {
		return "", fmt.Errorf("ledger: read: %w", err)
	}
	cur := string(bytes.TrimRight(buf[:n], "\x00"))
	next, write := f(cur)
	if write {
		var out [markerSize]byte
		copy(out[:], next)
		if _, err := syscall.Pwrite(lf.fd, out[:], 0); err != nil {
			return "", fmt.Errorf("ledger: write: %w", err)
		}
	}
	return cur, nil
}

// enter puts id's marker on key and returns the marker it replaced ("" if none).
func (l *ledger) enter(key, id string) (string, error) {
	return l.swap(key, func(string) (string, bool) { return id, true })
}

// leave removes id's marker from key if it is still there, and returns the
// marker found there otherwise (someone entered while id was inside).
func (l *ledger) leave(key, id string) (string, error) {
	cur, err := l.swap(key, func(cur string) (string, bool) { return "", cur == id })
	if cur == id {
		cur = ""
	}
	return cur, err
}

func (l *ledger) close() {
	l.mu.Lock()
	defer l.mu.Unlock()
	for k, f := range l.files {
		syscall.Close(f.fd)
		delete(l.files, k)
	}
}

// eventLog is a process's append-only record of its lock cycles. Each line
// is written with one write(2) on an O_APPEND descriptor, so what a
// process wrote survives its SIGKILL.
type eventLog struct {
	mu sync.Mutex
	f  *os.File
}

func openEventLog(path string) (*eventLog, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	return &eventLog{f: f}, nil
}

func (e *eventLog) write(line []byte) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	_, err := e.f.Write(append(line, '\n'))
	return err
}

func (e *eventLog) close() error { return e.f.Close() }
