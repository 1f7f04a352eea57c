package exampleenv

import (
	"context"

	"github.com/kannuki-go/kannuki/store"
)

// None is the -backend that locks nothing: every lock is granted at once,
// to everyone. It shows what the examples' locks prevent (the tests run it
// to prove that their checks catch a broken lock). The data lives in
// PostgreSQL.
const None = "none"

// noLocks is a store.Backend that grants every request and excludes no one.
type noLocks struct{}

func (noLocks) Acquire(context.Context, store.Key, store.Request) (store.Lease, error) {
	return noLease{}, nil
}

func (noLocks) Held(context.Context, store.Key) (bool, error) { return false, nil }

type noLease struct{}

func (noLease) Release(context.Context) error { return nil }
