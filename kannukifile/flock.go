//go:build linux || darwin || dragonfly || freebsd || netbsd || openbsd

package kannukifile

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/kannuki-go/kannuki/store"
)

// errReplaced: the lock file was removed or replaced while we locked or
// waited on it, so locking our descriptor would protect nothing.
var errReplaced = errors.New("lock file was removed or replaced")

// maxReopen bounds how often Acquire re-opens a lock file that someone
// keeps replacing.
const maxReopen = 100

// fileID identifies a file: device and inode.
type fileID struct{ dev, ino uint64 }

// lockFile opens key's file and locks it as req says: the whole of Acquire
// below the in-memory queue. On error nothing is locked or open.
func (b *Backend) lockFile(ctx context.Context, key store.Key, req store.Request, start, deadline time.Time) (*lockedFile, error) {
	path := b.Path(key)
	for reopened := 0; ; reopened++ {
		fd, writable, err := openLockFile(path, b.perm)
		if err != nil {
			return nil, err
		}
		err = b.lockFD(ctx, key, fd, path, req, start, deadline)
		if err == nil {
			// A lock on a file that was unlinked or replaced meanwhile
			// excludes nobody: check the path still names our file.
			var same bool
			if same, err = samePath(fd, path); err == nil && same {
				lf := &lockedFile{fd: fd, path: path, writable: writable}
				lf.writeRecord(key.String, req.Mode)
				return lf, nil
			} else if err == nil {
				err = errReplaced
			}
		}
		unlockClose(fd)
		if !errors.Is(err, errReplaced) {
			return nil, err
		}
		if reopened == maxReopen {
			return nil, fmt.Errorf("lock file %s keeps being removed or replaced", path)
		}
	}
}

// lockFD locks fd, waiting as req says.
func (b *Backend) lockFD(ctx context.Context, key store.Key, fd int, path string, req store.Request, start, deadline time.Time) error {
	ok, err := tryFlock(fd, req.Mode, path)
	switch {
	case err != nil || ok:
		return err
	case req.Wait == 0:
		return store.ErrNotAcquired
	case !deadline.IsZero() && !time.Now().Before(deadline):
		// The in-memory queue used up the wait.
		return store.ErrNotAcquired
	}
	if req.OnWait != nil {
		req.OnWait.NotifyWait() // another process holds the file
	}
	return b.waitFlock(ctx, key, fd, path, req.Mode, start, deadline)
}

// openLockFile opens (creating if needed) the lock file at path. It never
// follows a symlink and refuses anything but a regular file. When the file
// exists but is not writable for us (another user's, mode 0644) it is
// opened read-only: flock needs no write access; only the record is lost.
func openLockFile(path string, perm uint32) (fd int, writable bool, err error) {
	const flags = syscall.O_CLOEXEC | syscall.O_NOFOLLOW | syscall.O_NONBLOCK
	fd, err = retryEINTR(func() (int, error) { return syscall.Open(path, flags|syscall.O_RDWR|syscall.O_CREAT, perm) })
	writable = err == nil
	if errors.Is(err, syscall.EACCES) || errors.Is(err, syscall.EROFS) {
		var rerr error
		if fd, rerr = retryEINTR(func() (int, error) { return syscall.Open(path, flags|syscall.O_RDONLY, 0) }); rerr == nil {
			err = nil
		}
	}
	if errors.Is(err, syscall.ELOOP) || errors.Is(err, syscall.EMLINK) { // EMLINK: O_NOFOLLOW on a symlink, BSD
		return -1, false, fmt.Errorf("lock file %s is a symlink; refusing to follow it", path)
	}
	if err != nil && outOfFiles(err) {
		return -1, false, capacityError(&fs.PathError{Op: "open", Path: path, Err: err})
	}
	if err != nil {
		return -1, false, fmt.Errorf("open lock file: %w", &fs.PathError{Op: "open", Path: path, Err: err})
	}
	var st syscall.Stat_t
	if err := syscall.Fstat(fd, &st); err != nil {
		syscall.Close(fd)
		return -1, false, fmt.Errorf("stat lock file: %w", &fs.PathError{Op: "fstat", Path: path, Err: err})
	}
	if st.Mode&syscall.S_IFMT != syscall.S_IFREG {
		syscall.Close(fd)
		return -1, false, fmt.Errorf("lock file %s is not a regular file", path)
	}
	return fd, writable, nil
}

// tryFlock takes a non-blocking flock: (true, nil) when granted, (false,
// nil) when someone holds a conflicting lock.
func tryFlock(fd int, mode store.Mode, path string) (bool, error) {
	how := syscall.LOCK_EX
	if mode == store.ModeShared {
		how = syscall.LOCK_SH
	}
	_, err := retryEINTR(func() (int, error) { return 0, syscall.Flock(fd, how|syscall.LOCK_NB) })
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, syscall.EWOULDBLOCK):
		return false, nil
	}
	return false, fmt.Errorf("flock: %w", &fs.PathError{Op: "flock", Path: path, Err: err})
}

// unlockClose drops fd's lock, then closes it. Unlocking first matters:
// the close event wakes waiters, and it must come after the unlock.
func unlockClose(fd int) {
	_, _ = retryEINTR(func() (int, error) { return 0, syscall.Flock(fd, syscall.LOCK_UN) })
	syscall.Close(fd)
}

// samePath reports whether path still names the file open as fd.
func samePath(fd int, path string) (bool, error) {
	var open, named syscall.Stat_t
	if err := syscall.Fstat(fd, &open); err != nil {
		return false, fmt.Errorf("stat lock file: %w", &fs.PathError{Op: "fstat", Path: path, Err: err})
	}
	err := syscall.Lstat(path, &named)
	if errors.Is(err, syscall.ENOENT) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("stat lock file: %w", &fs.PathError{Op: "lstat", Path: path, Err: err})
	}
	return uint64(open.Dev) == uint64(named.Dev) && uint64(open.Ino) == uint64(named.Ino), nil
}

// statID returns the identity of the file at path (not following symlinks).
func statID(path string) (fileID, error) {
	var st syscall.Stat_t
	if err := syscall.Lstat(path, &st); err != nil {
		return fileID{}, &fs.PathError{Op: "lstat", Path: path, Err: err}
	}
	return fileID{dev: uint64(st.Dev), ino: uint64(st.Ino)}, nil
}

// fdID returns the identity of the open file fd.
func fdID(fd int) (fileID, error) {
	var st syscall.Stat_t
	if err := syscall.Fstat(fd, &st); err != nil {
		return fileID{}, err
	}
	return fileID{dev: uint64(st.Dev), ino: uint64(st.Ino)}, nil
}

// probeHeld tells whether path is locked by taking and dropping a
// non-blocking exclusive lock on a descriptor of its own.
func probeHeld(path string) (bool, error) {
	fd, err := retryEINTR(func() (int, error) {
		return syscall.Open(path, syscall.O_RDONLY|syscall.O_CLOEXEC|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	})
	if errors.Is(err, syscall.ENOENT) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("open lock file: %w", &fs.PathError{Op: "open", Path: path, Err: err})
	}
	defer unlockClose(fd)
	ok, err := tryFlock(fd, store.ModeExclusive, path)
	return !ok, err
}

// probeDir proves dir usable by creating, locking and removing a file in
// it, and tells whether /proc/locks shows that lock under the file's stat
// identity (so Held and Locks may read it instead of probing).
func probeDir(dir string) (procLocks bool, err error) {
	var rnd [8]byte
	_, _ = rand.Read(rnd[:])
	name := filepath.Join(dir, fmt.Sprintf(".kannuki-probe-%d-%s", os.Getpid(), hex.EncodeToString(rnd[:])))
	fd, err := retryEINTR(func() (int, error) {
		return syscall.Open(name, syscall.O_RDWR|syscall.O_CREAT|syscall.O_EXCL|syscall.O_CLOEXEC|syscall.O_NOFOLLOW, 0o600)
	})
	if err != nil {
		return false, fmt.Errorf("lock directory %s is not writable: %w", dir, &fs.PathError{Op: "create", Path: name, Err: err})
	}
	defer func() {
		syscall.Unlink(name)
		unlockClose(fd)
	}()
	if ok, err := tryFlock(fd, store.ModeExclusive, name); err != nil || !ok {
		return false, fmt.Errorf("lock directory %s does not support flock: %w", dir, err)
	}
	id, err := fdID(fd)
	if err != nil {
		return false, nil
	}
	locks, err := readProcLocks()
	if err != nil {
		return false, nil
	}
	for _, l := range locks[id] {
		if l.granted && l.mode == store.ModeExclusive {
			return true, nil
		}
	}
	return false, nil
}

// ownerOf returns the owner uid of fi.
func ownerOf(fi fs.FileInfo) (int, bool) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, false
	}
	return int(st.Uid), true
}

// retryEINTR repeats a system call interrupted by a signal.
func retryEINTR(f func() (int, error)) (int, error) {
	for {
		n, err := f()
		if !errors.Is(err, syscall.EINTR) {
			return n, err
		}
	}
}
