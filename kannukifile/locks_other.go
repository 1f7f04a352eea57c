//go:build darwin || dragonfly || freebsd || netbsd || openbsd

package kannukifile

import (
	"fmt"

	"github.com/kannuki-go/kannuki/store"
)

// readProcLocks: these systems have no /proc/locks.
func readProcLocks() (map[fileID][]procLock, error) {
	return nil, fmt.Errorf("%w: kannukifile: no kernel lock table to read on this system", store.ErrUnsupported)
}
