package kannuki_test

import (
	"context"
	"testing"

	"github.com/kannuki-go/kannuki"
)

func TestDefinitionKeyHasNameAndScope(t *testing.T) {
	numbering := kannuki.Define[int64]("invoice_numbers")
	if got := numbering.Key(42); got != "invoice_numbers/42" {
		t.Fatalf("Key = %q", got)
	}
	l, _ := newLocker(kannuki.Options{KeyPrefix: "billing"})
	ctx := context.Background()
	err := numbering.WithLock(ctx, l, 42, func(ctx context.Context) error {
		if held, _ := l.Held(ctx, "invoice_numbers/42"); !held {
			t.Error("definition did not lock name/scope")
		}
		if ok, _ := numbering.TryLock(context.Background(), l, 42, func(context.Context) error { return nil }); ok {
			t.Error("same scope from another call chain must be excluded")
		}
		if ok, _ := numbering.TryLock(context.Background(), l, 43, func(context.Context) error { return nil }); !ok {
			t.Error("another scope must be free")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	h, err := numbering.Acquire(ctx, l, 7)
	if err != nil {
		t.Fatal(err)
	}
	if held, _ := numbering.Held(ctx, l, 7); !held || h.Key() != "billing/invoice_numbers/7" {
		t.Fatalf("held %v key %q", held, h.Key())
	}
	h.Release(ctx)
	if err := numbering.Lock(ctx, l, 7, func(context.Context) error { return nil }); err != nil {
		t.Fatal(err)
	}
}

func TestDefineRejectsBadName(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Fatal("Define(\"\") must panic")
		}
	}()
	kannuki.Define[string]("")
}
