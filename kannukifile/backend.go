//go:build linux || darwin || dragonfly || freebsd || netbsd || openbsd

package kannukifile

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/kannuki-go/kannuki/store"

	"github.com/kannuki-go/kannuki/kannukimem"
)

// Backend locks files in one directory. It is safe for concurrent use,
// holds one open file per held lock and starts no goroutine of its own.
// There is nothing to close.
type Backend struct {
	dir  string
	perm uint32
	// gate queues this Backend's own waiters per key, in memory, so only
	// the front of the queue touches the file (see the package doc).
	gate *kannukimem.Backend
	// procLocks is true when /proc/locks names this directory's files the
	// way stat does, which New verified; Held and Locks then read it.
	procLocks bool
	// wakers keeps file-event watchers for reuse (Linux: inotify).
	wakers wakerPool
}

var (
	_ store.Backend = (*Backend)(nil)
	_ store.Lister  = (*Backend)(nil)
	_ io.Closer     = (*Backend)(nil)
)

// New returns a Backend keeping its lock files in dir.
//
// dir must exist and be writable; New does not create it, so a typo gives
// an error instead of locks that exclude nobody. dir == "" means the
// per-user default, DefaultDir, created with mode 0700 if missing and
// refused if another user owns it or others can write to it.
func New(dir string, opts Options) (*Backend, error) {
	b, err := open(dir, opts)
	if err != nil && !strings.HasPrefix(err.Error(), "kannuki:") {
		// Called by the user, not through a Locker: say whose error it is.
		err = fmt.Errorf("kannuki: %w", err)
	}
	return b, err
}

func open(dir string, opts Options) (*Backend, error) {
	perm := opts.Perm
	if perm == 0 {
		perm = 0o600
	}
	if perm&^fs.ModePerm != 0 {
		return nil, fmt.Errorf("%w: Options.Perm %v is not a permission", store.ErrInvalidArgument, opts.Perm)
	}
	var err error
	if dir == "" {
		dir, err = defaultDir()
	} else {
		dir, err = checkDir(dir)
	}
	if err != nil {
		return nil, err
	}
	if !opts.AllowNetworkFS {
		if fsName := networkFS(dir); fsName != "" {
			return nil, fmt.Errorf("lock directory %s is on a network filesystem (%s): file locks there do not exclude other hosts; use a database backend, or set kannukifile.Options.AllowNetworkFS", dir, fsName)
		}
	}
	procLocks, err := probeDir(dir)
	if err != nil {
		return nil, err
	}
	return &Backend{dir: dir, perm: uint32(perm), gate: kannukimem.New(), procLocks: procLocks}, nil
}

// Close releases the inotify instances the Backend keeps for reuse by
// waiters. It does not release held locks, and the Backend stays usable
// (without keeping instances). Instances are also released when the
// Backend is garbage collected, so Close is optional.
func (b *Backend) Close() error { return b.wakers.close() }

// Dir returns the absolute path of the lock directory.
func (b *Backend) Dir() string { return b.dir }

// Path returns the lock file of key: a file directly inside Dir.
func (b *Backend) Path(key store.Key) string { return filepath.Join(b.dir, fileName(key.String)) }

// DefaultDir is the directory New uses for dir == "": kannuki-<uid> in
// os.TempDir(). It depends on nothing a login session sets (such as
// XDG_RUNTIME_DIR, which cron and systemd units usually lack), so a cron job
// and an interactive run of one user meet in the same directory. Services
// with a private /tmp (systemd PrivateTmp=) do not: pass them an explicit
// directory.
func DefaultDir() string {
	return filepath.Join(os.TempDir(), "kannuki-"+strconv.Itoa(os.Geteuid()))
}

// defaultDir creates DefaultDir if needed and makes sure it is ours: in a
// shared temporary directory another user could have created it first to
// watch or block our locks.
func defaultDir() (string, error) {
	dir, err := filepath.Abs(DefaultDir())
	if err != nil {
		return "", fmt.Errorf("default lock directory: %w", err)
	}
	if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return "", fmt.Errorf("create default lock directory: %w", err)
	}
	fi, err := os.Lstat(dir)
	if err != nil {
		return "", fmt.Errorf("default lock directory: %w", err)
	}
	if !fi.IsDir() {
		return "", fmt.Errorf("default lock directory %s is not a directory (a symlink or file is in the way); remove it or pass a directory to kannukifile.New", dir)
	}
	if uid, ok := ownerOf(fi); ok && uid != os.Geteuid() || fi.Mode().Perm()&0o022 != 0 {
		return "", fmt.Errorf("default lock directory %s is not private (owner uid %d, mode %v; want uid %d, not writable by others); remove it or pass a directory to kannukifile.New", dir, uid, fi.Mode().Perm(), os.Geteuid())
	}
	return dir, nil
}

// checkDir makes a caller's directory absolute and checks that it exists.
func checkDir(dir string) (string, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", fmt.Errorf("lock directory %q: %w", dir, err)
	}
	fi, err := os.Stat(abs)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return "", fmt.Errorf("lock directory %s does not exist (kannukifile.New does not create it): %w", abs, err)
	case err != nil:
		return "", fmt.Errorf("lock directory %s: %w", abs, err)
	case !fi.IsDir():
		return "", fmt.Errorf("lock directory %s is not a directory", abs)
	}
	return abs, nil
}

// Acquire implements store.Backend.
func (b *Backend) Acquire(ctx context.Context, key store.Key, req store.Request) (store.Lease, error) {
	start := time.Now()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if req.Mode != store.ModeExclusive && req.Mode != store.ModeShared {
		return nil, fmt.Errorf("%w: unknown lock mode %d", store.ErrInvalidArgument, req.Mode)
	}
	var deadline time.Time
	if req.Wait > 0 {
		deadline = start.Add(req.Wait)
	}
	gate, err := b.gate.Acquire(ctx, key, req)
	if err != nil {
		return nil, err // not granted in this process: the file is not touched
	}
	f, err := b.lockFile(ctx, key, req, start, deadline)
	if err != nil {
		_ = gate.Release(context.WithoutCancel(ctx))
		return nil, err
	}
	return &lease{key: key.String, mode: req.Mode, f: f, gate: gate}, nil
}

// Held implements store.Backend. Where the kernel's lock table can be
// read (/proc/locks on Linux) Held only reads it. Elsewhere it takes and at
// once drops a non-blocking exclusive lock on its own descriptor, so a try
// racing it may find the key held for those microseconds.
func (b *Backend) Held(ctx context.Context, key store.Key) (bool, error) {
	if err := ctx.Err(); err != nil {
		return false, err
	}
	path := b.Path(key)
	if b.procLocks {
		id, err := statID(path)
		if errors.Is(err, fs.ErrNotExist) {
			return false, nil // never locked since the directory was made
		}
		if err != nil {
			return false, fmt.Errorf("stat lock file: %w", err)
		}
		locks, err := readProcLocks()
		if err != nil {
			return false, err
		}
		for _, l := range locks[id] {
			if l.granted {
				return true, nil
			}
		}
		return false, nil
	}
	return probeHeld(path)
}
