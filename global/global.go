// Package global holds an optional process-wide Locker and functions that
// use it, like the Ruby gem's module functions (Kannuki.with_lock). Nothing
// in Kannuki needs it and nothing sets it implicitly: call SetDefault once
// at start-up, or pass a *kannuki.Locker around instead.
package global

import (
	"context"
	"errors"
	"sync/atomic"

	"github.com/kannuki-go/kannuki"
)

// ErrNoDefault is returned by the functions of this package before
// SetDefault was called.
var ErrNoDefault = errors.New("kannuki: no default Locker (call global.SetDefault)")

var defaultLocker atomic.Pointer[kannuki.Locker]

// SetDefault makes l the Locker used by the functions of this package.
// Passing nil unsets it.
func SetDefault(l *kannuki.Locker) { defaultLocker.Store(l) }

// Default returns the Locker set by SetDefault, or nil.
func Default() *kannuki.Locker { return defaultLocker.Load() }

func locker() (*kannuki.Locker, error) {
	if l := Default(); l != nil {
		return l, nil
	}
	return nil, ErrNoDefault
}

// WithLock calls Default().WithLock, or returns ErrNoDefault.
func WithLock(ctx context.Context, key string, fn func(ctx context.Context) error, opts ...kannuki.CallOption) error {
	l, err := locker()
	if err != nil {
		return err
	}
	return l.WithLock(ctx, key, fn, opts...)
}

// TryLock calls Default().TryLock, or returns ErrNoDefault.
func TryLock(ctx context.Context, key string, fn func(ctx context.Context) error, opts ...kannuki.CallOption) (bool, error) {
	l, err := locker()
	if err != nil {
		return false, err
	}
	return l.TryLock(ctx, key, fn, opts...)
}

// Acquire calls Default().Acquire, or returns ErrNoDefault.
func Acquire(ctx context.Context, key string, opts ...kannuki.CallOption) (*kannuki.Handle, error) {
	l, err := locker()
	if err != nil {
		return nil, err
	}
	return l.Acquire(ctx, key, opts...)
}

// Held calls Default().Held, or returns ErrNoDefault.
func Held(ctx context.Context, key string) (bool, error) {
	l, err := locker()
	if err != nil {
		return false, err
	}
	return l.Held(ctx, key)
}
