package global_test

import (
	"context"
	"errors"
	"testing"

	"github.com/kannuki-go/kannuki"
	"github.com/kannuki-go/kannuki/global"
	"github.com/kannuki-go/kannuki/kannukimem"
)

func TestDefault(t *testing.T) {
	ctx := context.Background()
	noop := func(context.Context) error { return nil }
	global.SetDefault(nil)
	if err := global.WithLock(ctx, "k", noop); !errors.Is(err, global.ErrNoDefault) {
		t.Fatalf("no default: %v", err)
	}
	l := kannuki.New(kannukimem.New(), kannuki.Options{})
	global.SetDefault(l)
	defer global.SetDefault(nil)
	if err := global.WithLock(ctx, "k", noop); err != nil {
		t.Fatal(err)
	}
	if ok, err := global.TryLock(ctx, "k", noop); !ok || err != nil {
		t.Fatal(ok, err)
	}
	if err := global.WithLock(ctx, "k", noop); err != nil {
		t.Fatal(err)
	}
	h, err := global.Acquire(ctx, "k")
	if err != nil {
		t.Fatal(err)
	}
	if held, err := global.Held(ctx, "k"); !held || err != nil {
		t.Fatal(held, err)
	}
	h.Release(ctx)
}
