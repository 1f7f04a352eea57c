// Package outcome names how a lock acquisition ended, for the metrics of
// kannukiotel and kannukiprom. Every kannuki.Reason has a value, so the set
// of values, and so of metric series, is fixed; Index numbers them so that
// a hook keeps its per-outcome instruments in arrays.
package outcome

import "github.com/kannuki-go/kannuki"

// The outcome values.
const (
	Acquired         = "acquired"
	Held             = "held"
	Timeout          = "timeout"
	Canceled         = "canceled"
	Deadlock         = "deadlock"
	Error            = "error"
	RetriesExhausted = "retries_exhausted"
	PoolExhausted    = "pool_exhausted"
	Capacity         = "capacity"
	Unknown          = "unknown" // a Reason newer than this package
)

// Names holds the outcome values, indexed by Index.
var Names = [...]string{
	Acquired, Held, Timeout, Canceled,
	Deadlock, Error, RetriesExhausted, PoolExhausted, Capacity, Unknown,
}

// N is the number of outcomes.
const N = len(Names)

// Index maps an acquisition's outcome event to its row in Names: 0 for a
// grant, else the reason's row.
func Index(e *kannuki.Event) int {
	if e.Kind == kannuki.EventAcquired {
		return 0
	}
	switch e.Reason {
	case kannuki.ReasonHeld:
		return 1
	case kannuki.ReasonTimeout:
		return 2
	case kannuki.ReasonCanceled:
		return 3
	case kannuki.ReasonDeadlock:
		return 4
	case kannuki.ReasonError:
		return 5
	case kannuki.ReasonRetriesExhausted:
		return 6
	case kannuki.ReasonPoolExhausted:
		return 7
	case kannuki.ReasonCapacity:
		return 8
	}
	return 9
}
