package kannuki

import (
	"context"
	"fmt"
)

// Definition is a named, typed, reusable lock: the Go form of the Ruby
// model macro `kannuki :number_generation, scope: :company_id`. Its keys are
// "name/scope", so the declared name is always part of the key (the Ruby
// macro's defect of leaving it out is not copied):
//
//	var invoiceNumbers = kannuki.Define[int64]("invoice_numbers")
//	err := invoiceNumbers.WithLock(ctx, l, companyID, func(ctx context.Context) error { ... })
//
// Transaction forms take the definition's key (Go methods cannot add the
// transaction's type parameter):
//
//	err := kannuki.InTx(ctx, l, invoiceNumbers.Key(companyID), func(ctx context.Context, tx *sql.Tx) error { ... })
//	err = kannuki.LockTx(ctx, l, tx, invoiceNumbers.Key(companyID))
//
// A Definition is immutable and safe for concurrent use.
type Definition[T any] struct {
	name string
}

// Define declares a lock named name, scoped by values of type T (a company
// id, a user id...). It panics if name is not a valid key, like
// regexp.MustCompile, because definitions are package-level declarations.
func Define[T any](name string) *Definition[T] {
	if err := validKey(name); err != nil {
		panic(fmt.Sprintf("kannuki.Define(%q): %v", name, err))
	}
	return &Definition[T]{name: name}
}

// Name returns the declared name.
func (d *Definition[T]) Name() string { return d.name }

// Key returns the lock key for scope: "name/scope", the scope formatted
// with fmt's %v.
func (d *Definition[T]) Key(scope T) string { return d.name + "/" + fmt.Sprint(scope) }

// WithLock is l.WithLock on d.Key(scope).
func (d *Definition[T]) WithLock(ctx context.Context, l *Locker, scope T, fn func(ctx context.Context) error, opts ...CallOption) error {
	return l.WithLock(ctx, d.Key(scope), fn, opts...)
}

// Lock is l.Lock on d.Key(scope).
func (d *Definition[T]) Lock(ctx context.Context, l *Locker, scope T, fn func(ctx context.Context) error, opts ...CallOption) error {
	return l.Lock(ctx, d.Key(scope), fn, opts...)
}

// TryLock is l.TryLock on d.Key(scope).
func (d *Definition[T]) TryLock(ctx context.Context, l *Locker, scope T, fn func(ctx context.Context) error, opts ...CallOption) (bool, error) {
	return l.TryLock(ctx, d.Key(scope), fn, opts...)
}

// Acquire is l.Acquire on d.Key(scope).
func (d *Definition[T]) Acquire(ctx context.Context, l *Locker, scope T, opts ...CallOption) (*Handle, error) {
	return l.Acquire(ctx, d.Key(scope), opts...)
}

// Held is l.Held on d.Key(scope).
func (d *Definition[T]) Held(ctx context.Context, l *Locker, scope T) (bool, error) {
	return l.Held(ctx, d.Key(scope))
}
