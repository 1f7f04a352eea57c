//go:build !(linux || darwin || dragonfly || freebsd || netbsd || openbsd)

package kannukifile

import (
	"context"
	"fmt"
	"runtime"

	"github.com/kannuki-go/kannuki"
)

// Backend is not available on this system (no flock).
type Backend struct{}

// New returns an error matching kannuki.ErrUnsupported: this system has no
// flock(2).
func New(dir string, opts Options) (*Backend, error) {
	return nil, fmt.Errorf("%w: kannukifile: no flock on %s", kannuki.ErrUnsupported, runtime.GOOS)
}

// DefaultDir is empty on systems without flock.
func DefaultDir() string { return "" }

// Acquire implements kannuki.Backend; it always fails here.
func (b *Backend) Acquire(context.Context, kannuki.Key, kannuki.Request) (kannuki.Lease, error) {
	return nil, fmt.Errorf("%w: kannukifile: no flock on %s", kannuki.ErrUnsupported, runtime.GOOS)
}

// Held implements kannuki.Backend; it always fails here.
func (b *Backend) Held(context.Context, kannuki.Key) (bool, error) {
	return false, fmt.Errorf("%w: kannukifile: no flock on %s", kannuki.ErrUnsupported, runtime.GOOS)
}
