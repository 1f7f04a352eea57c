package kannuki

import (
	"context"
	"sync/atomic"
)

// The default Locker is optional convenience, like the Ruby module
// functions. Nothing in Kannuki needs it and nothing sets it implicitly.
var defaultLocker atomic.Pointer[Locker]

// SetDefault makes l the Locker used by the package-level functions.
// Passing nil unsets it.
func SetDefault(l *Locker) { defaultLocker.Store(l) }

// Default returns the Locker set by SetDefault, or nil.
func Default() *Locker { return defaultLocker.Load() }

// WithLock calls Default().WithLock, or returns ErrNoDefault.
func WithLock(ctx context.Context, key string, fn func(ctx context.Context) error, opts ...CallOption) error {
	l := Default()
	if l == nil {
		return ErrNoDefault
	}
	return l.WithLock(ctx, key, fn, opts...)
}

// TryLock calls Default().TryLock, or returns ErrNoDefault.
func TryLock(ctx context.Context, key string, fn func(ctx context.Context) error, opts ...CallOption) (bool, error) {
	l := Default()
	if l == nil {
		return false, ErrNoDefault
	}
	return l.TryLock(ctx, key, fn, opts...)
}

// Lock calls Default().Lock, or returns ErrNoDefault.
func Lock(ctx context.Context, key string, fn func(ctx context.Context) error, opts ...CallOption) error {
	l := Default()
	if l == nil {
		return ErrNoDefault
	}
	return l.Lock(ctx, key, fn, opts...)
}

// Acquire calls Default().Acquire, or returns ErrNoDefault.
func Acquire(ctx context.Context, key string, opts ...CallOption) (*Handle, error) {
	l := Default()
	if l == nil {
		return nil, ErrNoDefault
	}
	return l.Acquire(ctx, key, opts...)
}

// Held calls Default().Held, or returns ErrNoDefault.
func Held(ctx context.Context, key string) (bool, error) {
	l := Default()
	if l == nil {
		return false, ErrNoDefault
	}
	return l.Held(ctx, key)
}
