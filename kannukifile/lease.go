//go:build linux || darwin || dragonfly || freebsd || netbsd || openbsd

package kannukifile

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/kannuki-go/kannuki/keys"
	"github.com/kannuki-go/kannuki/store"

	"github.com/kannuki-go/kannuki"
)

// lockedFile is an open, flocked lock file.
type lockedFile struct {
	fd       int
	path     string
	writable bool
}

// lease is one held lock: the locked file and the in-memory queue slot.
type lease struct {
	key  string
	mode store.Mode
	f    *lockedFile
	gate store.Lease

	mu   sync.Mutex
	done bool
}

var _ store.Checker = (*lease)(nil)

// Release implements store.Lease. It unlocks and closes the file (no
// I/O that could block on the context). If the lock file had been removed
// or replaced while held, the lock excluded nobody from then on, and
// Release returns an error matching store.ErrLockLost. A second Release
// returns an error matching store.ErrReleased.
func (l *lease) Release(ctx context.Context) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.done {
		return store.ErrReleased
	}
	l.done = true
	same, err := samePath(l.f.fd, l.f.path)
	unlockClose(l.f.fd)
	_ = l.gate.Release(context.WithoutCancel(ctx)) // in memory: cannot fail
	if err != nil {
		return err
	}
	if !same {
		return &kannuki.LockLostError{Key: l.key, Err: errReplaced}
	}
	return nil
}

// Check implements store.Checker. A flock cannot be taken from a living
// process, but it stops protecting anything if its file is removed or
// replaced (a new locker would lock the new file): Check reports that as
// an error matching store.ErrLockLost.
func (l *lease) Check(context.Context) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.done {
		return store.ErrReleased
	}
	same, err := samePath(l.f.fd, l.f.path)
	if err != nil {
		return err
	}
	if !same {
		return &kannuki.LockLostError{Key: l.key, Err: errReplaced}
	}
	return nil
}

// record is the readable content of a lock file: a key line, then, while
// an exclusive holder has it, a holder line.
type record struct {
	Key       string    `json:"key,omitempty"`
	Truncated bool      `json:"truncated,omitempty"` // Key is the first keys.MaxKeyLen bytes
	PID       int64     `json:"pid,omitempty"`
	Since     time.Time `json:"since,omitzero"`
	Program   string    `json:"program,omitempty"`
}

// holderLineLen is the fixed length of the holder line, newline included:
// each exclusive holder overwrites the last one's in place, so the file
// never changes size and writing the record costs one pwrite.
const holderLineLen = 192

// writeRecord writes the record after the lock was granted. It is best
// effort: a full disk or a read-only file costs the record, not the lock.
// The holder line is left in place on release; readers trust it only while
// the kernel shows its pid holding the file exclusively.
func (f *lockedFile) writeRecord(key string, mode store.Mode) {
	if !f.writable {
		return
	}
	head := record{Key: key}
	if len(key) > keys.MaxKeyLen {
		head = record{Key: key[:keys.MaxKeyLen], Truncated: true}
	}
	buf, err := json.Marshal(head)
	if err != nil {
		return
	}
	buf = append(buf, '\n')
	if mode == store.ModeShared {
		// Shared holders may be many at once: each writes only the key
		// line, identical for all, and only into an empty file.
		var st syscall.Stat_t
		if syscall.Fstat(f.fd, &st) == nil && st.Size == 0 {
			_, _ = syscall.Pwrite(f.fd, buf, 0)
		}
		return
	}
	_, _ = syscall.Pwrite(f.fd, append(buf, holderLine()...), 0)
}

// holderLine is this process's holder line, padded to holderLineLen.
func holderLine() []byte {
	program := []rune(filepath.Base(os.Args[0]))
	for {
		line, err := json.Marshal(record{PID: int64(os.Getpid()), Since: time.Now().UTC(), Program: string(program)})
		if err != nil {
			return nil
		}
		if len(line) < holderLineLen {
			pad := bytes.Repeat([]byte{' '}, holderLineLen-1-len(line))
			return append(append(line, pad...), '\n')
		}
		program = program[:len(program)/2]
	}
}

// readRecord reads the record of the lock file at path; a missing, empty
// or half-written record gives what could be parsed.
func readRecord(path string) record {
	fd, err := syscall.Open(path, syscall.O_RDONLY|syscall.O_CLOEXEC|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if err != nil {
		return record{}
	}
	defer syscall.Close(fd)
	buf := make([]byte, 6*keys.MaxKeyLen+2*holderLineLen) // a key of NULs escapes to 6 bytes each
	n, err := syscall.Pread(fd, buf, 0)
	if err != nil || n <= 0 {
		return record{}
	}
	var rec record
	lines := buf[:n]
	for i := 0; i < 2 && len(lines) > 0; i++ {
		line := lines
		rest := []byte(nil)
		if j := indexByte(lines, '\n'); j >= 0 {
			line, rest = lines[:j], lines[j+1:]
		}
		var r record
		if json.Unmarshal(line, &r) == nil {
			if i == 0 {
				rec.Key, rec.Truncated = r.Key, r.Truncated
			} else {
				rec.PID, rec.Since, rec.Program = r.PID, r.Since, r.Program
			}
		}
		lines = rest
	}
	return rec
}

func indexByte(b []byte, c byte) int {
	for i, x := range b {
		if x == c {
			return i
		}
	}
	return -1
}
