package kannukiprom

import (
	"github.com/kannuki-go/kannuki/store"
)

// Values of the mode label, indexed by modeIndex.
var modes = [...]string{"exclusive", "shared"}

const numModes = len(modes)

func modeIndex(m store.Mode) int {
	if m == store.ModeShared {
		return 1
	}
	return 0
}
