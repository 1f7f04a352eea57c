package queuetest

import (
	"context"
	"fmt"
	"strings"
	"sync"

	"github.com/kannuki-go/kannuki"
)

// Events counts lock events by kind and key; it is a kannuki.Hook.
type Events struct {
	mu     sync.Mutex
	counts map[kannuki.EventKind]map[string]int
	notify chan struct{}
}

// NewEvents returns an empty Events.
func NewEvents() *Events {
	return &Events{counts: map[kannuki.EventKind]map[string]int{}, notify: make(chan struct{}, 1)}
}

// LockEvent counts ev and wakes a WaitFor.
func (e *Events) LockEvent(_ context.Context, ev kannuki.Event) {
	e.mu.Lock()
	m := e.counts[ev.Kind]
	if m == nil {
		m = map[string]int{}
		e.counts[ev.Kind] = m
	}
	m[ev.Key]++
	e.mu.Unlock()
	select {
	case e.notify <- struct{}{}:
	default:
	}
}

// Count is the number of events of kind whose key contains part.
func (e *Events) Count(kind kannuki.EventKind, part string) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	n := 0
	for k, c := range e.counts[kind] {
		if strings.Contains(k, part) {
			n += c
		}
	}
	return n
}

// WaitFor waits until at least n events of kind with part in their key
// arrived. When ctx ends first, or HangGuard passes, it returns an error
// for the job that waits to return.
func (e *Events) WaitFor(ctx context.Context, kind kannuki.EventKind, part string, n int) error {
	ctx, cancel := context.WithTimeout(ctx, HangGuard)
	defer cancel()
	if !e.waitFor(ctx, kind, part, n) {
		return fmt.Errorf("%d %s events for %s did not arrive (got %d)", n, kind, part, e.Count(kind, part))
	}
	return nil
}

// waitFor waits until at least n events of kind with part in their key
// arrived, or ctx ends. It reports whether they did.
func (e *Events) waitFor(ctx context.Context, kind kannuki.EventKind, part string, n int) bool {
	for {
		if e.Count(kind, part) >= n {
			return true
		}
		select {
		case <-e.notify:
		case <-ctx.Done():
			return e.Count(kind, part) >= n
		}
	}
}
