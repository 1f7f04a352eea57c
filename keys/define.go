package keys

import (
	"fmt"
)

// Definition is a named, typed, reusable lock key: the Go form of the Ruby
// model macro `kannuki :number_generation, scope: :company_id`. Its keys are
// "name/scope", so the declared name is always part of the key (the Ruby
// macro's defect of leaving it out is not copied):
//
//	var invoiceNumbers = keys.Define[int64]("invoice_numbers")
//	err := l.WithLock(ctx, invoiceNumbers.Key(companyID), func(ctx context.Context) error { ... })
//	err = kannuki.InTx(ctx, l, invoiceNumbers.Key(companyID), func(ctx context.Context, tx *sql.Tx) error { ... })
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
		panic(fmt.Sprintf("keys.Define(%q): %v", name, err))
	}
	return &Definition[T]{name: name}
}

// Key returns the lock key for scope: "name/scope", the scope formatted
// with fmt's %v.
func (d *Definition[T]) Key(scope T) string { return d.name + "/" + fmt.Sprint(scope) }
