//go:build !(linux || darwin || dragonfly || freebsd || netbsd || openbsd)

package kannukifile

import (
	"context"
	"fmt"
	"runtime"

	"github.com/kannuki-go/kannuki/store"
)

// Backend is not available on this system (no flock).
type Backend struct{}

// New returns an error matching store.ErrUnsupported: this system has no
// flock(2).
func New(dir string, opts Options) (*Backend, error) {
	return nil, fmt.Errorf("%w: kannukifile: no flock on %s", store.ErrUnsupported, runtime.GOOS)
}

// DefaultDir is empty on systems without flock.
func DefaultDir() string { return "" }

// Acquire implements store.Backend; it always fails here.
func (b *Backend) Acquire(context.Context, store.Key, store.Request) (store.Lease, error) {
	return nil, fmt.Errorf("%w: kannukifile: no flock on %s", store.ErrUnsupported, runtime.GOOS)
}

// Held implements store.Backend; it always fails here.
func (b *Backend) Held(context.Context, store.Key) (bool, error) {
	return false, fmt.Errorf("%w: kannukifile: no flock on %s", store.ErrUnsupported, runtime.GOOS)
}
