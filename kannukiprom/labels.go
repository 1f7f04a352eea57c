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
