package kannukiprom

import "github.com/kannuki-go/kannuki"

// Values of the mode label, indexed by modeIndex.
var modes = [...]string{"exclusive", "shared"}

const numModes = len(modes)

func modeIndex(m kannuki.Mode) int {
	if m == kannuki.ModeShared {
		return 1
	}
	return 0
}

// Values of the outcome label, indexed by outcomeIndex. Every
// kannuki.Reason has one, so the number of series is fixed; "unknown" is a
// Reason newer than this package.
var outcomes = [...]string{
	"acquired", "held", "timeout", "canceled",
	"deadlock", "error", "retries_exhausted", "unknown",
}

const numOutcomes = len(outcomes)

// outcomeIndex maps an acquisition's outcome event to its row in outcomes.
func outcomeIndex(e *kannuki.Event) int {
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
	}
	return 7
}
