package hooktest

import (
	"context"
	"strings"
	"testing"

	"github.com/kannuki-go/kannuki"
)

func TestUniqueKey(t *testing.T) {
	a, b := UniqueKey(t, "pfx"), UniqueKey(t, "pfx")
	if a == b {
		t.Errorf("two keys alike: %q", a)
	}
	if want := "pfx/TestUniqueKey/"; !strings.HasPrefix(a, want) {
		t.Errorf("UniqueKey = %q, want prefix %q", a, want)
	}
	if u := Unique("s"); !strings.HasPrefix(u, "s-") || u == Unique("s") {
		t.Errorf("Unique = %q", u)
	}
}

// TestRecorderByCall: MemCycle's events land under the name As gave the
// context, and Of hands out a copy.
func TestRecorderByCall(t *testing.T) {
	rec := &Recorder{}
	rec.LockEvent(As(context.Background(), "a"), kannuki.Event{Kind: kannuki.EventAttempt})
	rec.LockEvent(context.Background(), kannuki.Event{Kind: kannuki.EventAcquired})
	MemCycle(t, rec, UniqueKey(t, "hooktest"))()
	got := rec.Of("a")
	if len(got) != 1 || got[0].Kind != kannuki.EventAttempt {
		t.Errorf("Of(a) = %v, want one attempt", got)
	}
	got[0].Kind = kannuki.EventLost
	if rec.Of("a")[0].Kind != kannuki.EventAttempt {
		t.Error("Of returned the recorder's own slice")
	}
	if n := len(rec.Of("")); n != 4 { // the untagged event and the cycle's attempt, acquired, released
		t.Errorf("%d untagged events, want 4", n)
	}
}
