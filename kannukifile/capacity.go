//go:build linux || darwin || dragonfly || freebsd || netbsd || openbsd

package kannukifile

import (
	"errors"
	"fmt"
	"syscall"

	"github.com/kannuki-go/kannuki/store"
)

// outOfFiles reports an open that failed because no more files can be
// open: the process's limit (EMFILE) or the system's (ENFILE).
func outOfFiles(err error) bool {
	return errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE)
}

// capacityError is the error of a lock file that could not be opened for
// want of file descriptors: every held lock keeps its file open, so this
// is where holding very many locks breaks first. It matches
// store.ErrCapacity and err, and names the limit.
func capacityError(err error) error {
	limit := "the system's open-file limit (ENFILE: fs.file-max, or a per-user kernel limit)"
	if errors.Is(err, syscall.EMFILE) {
		limit = "the process's open-file limit (RLIMIT_NOFILE, ulimit -n)"
		var rl syscall.Rlimit
		if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl) == nil {
			limit = fmt.Sprintf("the process's open-file limit (RLIMIT_NOFILE, ulimit -n: %d)", rl.Cur)
		}
	}
	return fmt.Errorf("%w: file: %s is reached, and every held lock keeps its lock file open: %w", store.ErrCapacity, limit, err)
}
