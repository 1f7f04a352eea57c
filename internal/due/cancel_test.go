package due

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestCancelExpires(t *testing.T) {
	q := &Queue{Fire: FireCancel}
	ctx, c := WithCancel(q, context.Background(), time.Now().Add(10*time.Millisecond))
	select {
	case <-ctx.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("the queue did not cancel the context within 10s")
	}
	if !errors.Is(ctx.Err(), context.Canceled) {
		t.Fatalf("ctx.Err() = %v, want context.Canceled", ctx.Err())
	}
	if !c.Stop(q) {
		t.Fatal("Stop after the queue canceled the context = false, want expired")
	}
}

func TestCancelStoppedInTime(t *testing.T) {
	q := &Queue{Fire: FireCancel}
	ctx, c := WithCancel(q, context.Background(), time.Now().Add(time.Hour))
	if ctx.Err() != nil {
		t.Fatalf("fresh context already ended: %v", ctx.Err())
	}
	if c.Stop(q) {
		t.Fatal("Stop before the bound = expired")
	}
	if ctx.Err() == nil {
		t.Fatal("Stop left the context alive")
	}
	q.mu.Lock()
	empty := q.head == nil
	q.mu.Unlock()
	if !empty {
		t.Fatal("Stop left the node on the queue")
	}
}

func TestCancelFollowsParent(t *testing.T) {
	q := &Queue{Fire: FireCancel}
	parent, cancel := context.WithCancel(context.Background())
	ctx, c := WithCancel(q, parent, time.Now().Add(time.Hour))
	cancel()
	<-ctx.Done()
	if c.Stop(q) {
		t.Fatal("a context its parent ended reported expired")
	}
}
