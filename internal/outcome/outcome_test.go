package outcome

import (
	"testing"

	"github.com/kannuki-go/kannuki"
)

func TestIndex(t *testing.T) {
	for _, c := range []struct {
		e    kannuki.Event
		want string
	}{
		{kannuki.Event{Kind: kannuki.EventAcquired}, Acquired},
		{kannuki.Event{Kind: kannuki.EventNotAcquired, Reason: kannuki.ReasonHeld}, Held},
		{kannuki.Event{Kind: kannuki.EventNotAcquired, Reason: kannuki.ReasonTimeout}, Timeout},
		{kannuki.Event{Kind: kannuki.EventNotAcquired, Reason: kannuki.ReasonCanceled}, Canceled},
		{kannuki.Event{Kind: kannuki.EventNotAcquired, Reason: kannuki.ReasonDeadlock}, Deadlock},
		{kannuki.Event{Kind: kannuki.EventNotAcquired, Reason: kannuki.ReasonError}, Error},
		{kannuki.Event{Kind: kannuki.EventNotAcquired, Reason: kannuki.ReasonRetriesExhausted}, RetriesExhausted},
		{kannuki.Event{Kind: kannuki.EventNotAcquired, Reason: kannuki.ReasonPoolExhausted}, PoolExhausted},
		{kannuki.Event{Kind: kannuki.EventNotAcquired, Reason: kannuki.ReasonCapacity}, Capacity},
		{kannuki.Event{Kind: kannuki.EventNotAcquired, Reason: kannuki.Reason(250)}, Unknown},
	} {
		if got := Names[Index(&c.e)]; got != c.want {
			t.Errorf("%v/%v: outcome %q, want %q", c.e.Kind, c.e.Reason, got, c.want)
		}
	}
}
