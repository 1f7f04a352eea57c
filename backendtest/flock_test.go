//go:build linux || darwin || freebsd || netbsd || openbsd || dragonfly

package backendtest_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/kannuki-go/kannuki/store"

	"github.com/kannuki-go/kannuki"
	"github.com/kannuki-go/kannuki/backendtest"
)

// TestConformanceFlock runs the suite, cross-process cases included,
// against flockBackend: a deliberately small lock-file backend that exists
// only to exercise the suite's re-executing children and SIGKILL case.
func TestConformanceFlock(t *testing.T) {
	// The children re-execute this test and must find the same directory:
	// pass it through the environment they inherit.
	const dirEnv = "KANNUKI_BACKENDTEST_FLOCK_DIR"
	dir := os.Getenv(dirEnv)
	if dir == "" {
		dir = t.TempDir()
		t.Setenv(dirEnv, dir)
	}
	b := flockBackend{dir: dir}
	backendtest.Run(t, backendtest.Harness{
		New:          func(testing.TB) store.Backend { return b },
		Shared:       true,
		MultiProcess: true,
	})
}

// flockBackend locks one file per key with flock(2). Waits poll every
// millisecond, which is fine for a test backend and wrong for a real one.
type flockBackend struct{ dir string }

type flockLease struct{ f *os.File }

func (b flockBackend) path(key store.Key) string {
	sum := sha256.Sum256([]byte(key.String))
	return filepath.Join(b.dir, hex.EncodeToString(sum[:16])+".lock")
}

func (b flockBackend) Acquire(ctx context.Context, key store.Key, req store.Request) (store.Lease, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("kannuki: flock: %w", err)
	}
	f, err := os.OpenFile(b.path(key), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("kannuki: flock: %w", err)
	}
	how := syscall.LOCK_EX
	if req.Mode == store.ModeShared {
		how = syscall.LOCK_SH
	}
	start := time.Now()
	for {
		err := syscall.Flock(int(f.Fd()), how|syscall.LOCK_NB)
		if err == nil {
			return flockLease{f}, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			f.Close()
			return nil, fmt.Errorf("kannuki: flock: %w", err)
		}
		if req.Wait == 0 || (req.Wait > 0 && time.Since(start) >= req.Wait) {
			f.Close()
			return nil, fmt.Errorf("%w: held", kannuki.ErrNotAcquired)
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("kannuki: flock: %w", ctx.Err())
		case <-time.After(time.Millisecond):
		}
	}
}

func (b flockBackend) Held(ctx context.Context, key store.Key) (bool, error) {
	f, err := os.OpenFile(b.path(key), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return false, err
	}
	defer f.Close()
	err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
	if errors.Is(err, syscall.EWOULDBLOCK) {
		return true, nil
	}
	return false, err // closing the file drops the probe's lock
}

func (l flockLease) Release(context.Context) error { return l.f.Close() }
