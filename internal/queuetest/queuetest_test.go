package queuetest

import (
	"context"
	"testing"
	"time"

	"github.com/kannuki-go/kannuki"
)

// TestTrackerOverlap: a run of an item that starts while another is in
// progress counts as an overlap; runs after it do not.
func TestTrackerOverlap(t *testing.T) {
	inside, release := make(chan struct{}), make(chan struct{})
	tr := NewTracker[int64](func(_ context.Context, item string, nth int) error {
		if item == "a" && nth == 1 {
			close(inside)
			<-release
		}
		return nil
	})
	done := make(chan error, 1)
	go func() { done <- tr.Run(context.Background(), 1, "a") }()
	<-inside
	if err := tr.Run(context.Background(), 2, "a"); err != nil { // overlaps run 1
		t.Fatal(err)
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if err := tr.Run(context.Background(), 3, "a"); err != nil { // after both
		t.Fatal(err)
	}
	runs, overlaps, started := tr.Snapshot()
	if runs["a"] != 3 || overlaps["a"] != 1 || len(started) != 3 {
		t.Errorf("runs %v, overlaps %v, %d starts; want 3, 1, 3", runs, overlaps, len(started))
	}
	runs["a"] = 0
	if again, _, _ := tr.Snapshot(); again["a"] != 3 {
		t.Error("Snapshot returned the tracker's own map")
	}
}

func TestEventsWaitFor(t *testing.T) {
	ev := NewEvents()
	go func() {
		for range 3 {
			ev.LockEvent(context.Background(), kannuki.Event{Kind: kannuki.EventSkipped, Key: "job:x"})
		}
	}()
	if err := ev.WaitFor(context.Background(), kannuki.EventSkipped, "x", 3); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	if err := ev.WaitFor(ctx, kannuki.EventSkipped, "x", 4); err == nil {
		t.Error("WaitFor for an event that never comes returned nil")
	}
	if n := ev.Count(kannuki.EventSkipped, "y"); n != 0 {
		t.Errorf("Count of another key = %d", n)
	}
	if s := RandomSuffix(t); len(s) != 12 || s == RandomSuffix(t) {
		t.Errorf("RandomSuffix = %q", s)
	}
}
