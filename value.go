package kannuki

import (
	"context"
	"fmt"
)

// WithLockValue is WithLock for a function that computes a value under the
// lock (the next invoice number, the stock left): it returns fn's value and
// the error WithLock would return. When fn did not run (the lock was not
// granted) the value is T's zero value.
//
//	number, err := kannuki.WithLockValue(ctx, l, "invoices/42", func(ctx context.Context) (int64, error) {
//		return nextNumber(ctx, 42)
//	})
func WithLockValue[T any](ctx context.Context, l *Locker, key string, fn func(ctx context.Context) (T, error), opts ...CallOption) (T, error) {
	var v T
	if fn == nil {
		return v, fmt.Errorf("%w: nil function", ErrInvalidArgument)
	}
	err := l.WithLock(ctx, key, func(ctx context.Context) error {
		var err error
		v, err = fn(ctx)
		return err
	}, opts...)
	return v, err
}
