package hooktest

import (
	"context"
	"sync"

	"github.com/kannuki-go/kannuki"
)

// whoKey tags a call's context so the Recorder can tell the calls apart.
type whoKey struct{}

// As tags ctx with the name of a call, under which a Recorder files the
// events the call causes.
func As(ctx context.Context, who string) context.Context {
	return context.WithValue(ctx, whoKey{}, who)
}

// Recorder is a kannuki.Hook keeping every event by the call (see As) that
// caused it. The zero value is ready to use.
type Recorder struct {
	mu sync.Mutex
	by map[string][]kannuki.Event
}

// LockEvent records e under the name As gave ctx ("" without one).
func (r *Recorder) LockEvent(ctx context.Context, e kannuki.Event) {
	who, _ := ctx.Value(whoKey{}).(string)
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.by == nil {
		r.by = make(map[string][]kannuki.Event)
	}
	r.by[who] = append(r.by[who], e)
}

// All returns a copy of the events of the call named who, in order.
func (r *Recorder) All(who string) []kannuki.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]kannuki.Event(nil), r.by[who]...)
}

// Of is All without EventWaiting, whose presence on a database backend
// depends on timing (see CheckSteps): the steps every run must show.
func (r *Recorder) Of(who string) []kannuki.Event {
	var out []kannuki.Event
	for _, e := range r.All(who) {
		if e.Kind != kannuki.EventWaiting {
			out = append(out, e)
		}
	}
	return out
}
