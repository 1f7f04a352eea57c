package hooktest

import (
	"context"

	"github.com/kannuki-go/kannuki"
)

// Func adapts a function to kannuki.Hook, for tests.
type Func func(ctx context.Context, e kannuki.Event)

// LockEvent implements kannuki.Hook.
func (f Func) LockEvent(ctx context.Context, e kannuki.Event) { f(ctx, e) }
