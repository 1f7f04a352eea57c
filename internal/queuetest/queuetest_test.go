package queuetest

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
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

// A Runner counts a run that begins during another run of its item as an
// overlap, a job that the guard did not let work as a skip, and a skip as
// foreign only when no other job of its item was under way in the process.
func TestRunnerCounts(t *testing.T) {
	var counts Counts
	t.Run("child", func(t *testing.T) {
		spec := Spec{Dir: t.TempDir()}
		// Registered before NewRunner, so run after it wrote its counts.
		t.Cleanup(func() {
			b, err := os.ReadFile(countsFile(spec.Dir, 0))
			if err == nil {
				err = json.Unmarshal(b, &counts)
			}
			if err != nil {
				t.Error(err)
			}
		})
		r := NewRunner(t, spec, time.Millisecond)
		ctx := context.Background()
		skip := func(context.Context) error { return nil }
		inside, release := make(chan struct{}), make(chan struct{})
		done := make(chan error, 1)
		go func() {
			done <- r.Around(ctx, "a", func(ctx context.Context) error {
				err := r.Work(ctx, "a")
				close(inside)
				<-release // keep "a" under way in this process
				return err
			})
		}()
		<-inside
		if err := r.Around(ctx, "a", skip); err != nil { // not foreign: "a" is under way here
			t.Fatal(err)
		}
		close(release)
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		if err := r.Around(ctx, "a", skip); err != nil { // foreign
			t.Fatal(err)
		}
		// Two runs of "b" at once: the second finds the first's marker.
		held := filepath.Join(spec.Dir, "running-b")
		if err := os.WriteFile(held, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := r.Work(ctx, "b"); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(held); err != nil {
			t.Errorf("the overlapping run removed the marker it does not own: %v", err)
		}
	})
	want := Counts{Runs: map[string]int{"a": 1, "b": 1}, Overlaps: map[string]int{"b": 1},
		Skips: map[string]int{"a": 2}, Foreign: map[string]int{"a": 1}}
	if !reflect.DeepEqual(counts, want) {
		t.Errorf("counts %+v, want %+v", counts, want)
	}
}

// errorsOf records the failures of Tally.Check.
type errorsOf struct {
	testing.TB
	errs []string
}

func (e *errorsOf) Helper()                   {}
func (e *errorsOf) Logf(string, ...any)       {}
func (e *errorsOf) Errorf(f string, a ...any) { e.errs = append(e.errs, fmt.Sprintf(f, a...)) }

func TestTallyCheck(t *testing.T) {
	var good Tally
	good.add(Counts{Runs: map[string]int{"i0": 1}, Skips: map[string]int{"i1": 1}, Foreign: map[string]int{"i1": 1}})
	good.add(Counts{Runs: map[string]int{"i1": 1}})
	rec := &errorsOf{TB: t}
	good.Check(rec, 3, "i0", "i1")
	if len(rec.errs) != 0 || good.Skipped() != 1 || !reflect.DeepEqual(good.RunsBy, []int{1, 1}) {
		t.Errorf("good tally %+v: errors %q", good, rec.errs)
	}
	var bad Tally // one process, an overlap, a missing item, no foreign skip
	bad.add(Counts{Runs: map[string]int{"i0": 2}, Overlaps: map[string]int{"i0": 1}, Errors: []string{"boom"}})
	rec = &errorsOf{TB: t}
	bad.Check(rec, 3, "i0", "i1")
	if len(rec.errs) != 6 {
		t.Errorf("bad tally gave %d errors, want 6: %q", len(rec.errs), rec.errs)
	}
}

func TestSpread(t *testing.T) {
	perJob, items := Spread(5, 2)
	if !reflect.DeepEqual(perJob, []string{"i0", "i1", "i0", "i1", "i0"}) || !reflect.DeepEqual(items, []string{"i0", "i1"}) {
		t.Errorf("Spread(5, 2) = %q, %q", perJob, items)
	}
}
