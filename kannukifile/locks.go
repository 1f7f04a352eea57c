//go:build linux || darwin || dragonfly || freebsd || netbsd || openbsd

package kannukifile

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/kannuki-go/kannuki/store"
)

// procLock is one entry of the kernel's lock table.
type procLock struct {
	pid     int64
	mode    store.Mode
	granted bool // false: a process blocked in flock waits for it
}

// Locks implements store.Lister from the kernel's lock table
// (/proc/locks), so it is exact for holders: each holding process, with
// its pid, the mode, and from the lock file's record the key, program and
// time of an exclusive holder. Kannuki's own waiters do not block in the
// kernel and are not listed; processes blocked in flock (flock(1) without
// -n, for example) are, with Granted false. Names are the record's key or,
// without one, the readable part of the file name.
//
// Without a usable /proc/locks (other systems, or a filesystem whose
// device numbers stat and /proc/locks disagree on, such as btrfs
// subvolumes) Locks returns an error matching store.ErrUnsupported.
func (b *Backend) Locks(ctx context.Context) ([]store.LockInfo, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if !b.procLocks {
		return nil, fmt.Errorf("%w: kannukifile: cannot read the kernel's lock table for %s", store.ErrUnsupported, b.dir)
	}
	table, err := readProcLocks()
	if err != nil {
		return nil, err
	}
	entries, err := os.ReadDir(b.dir)
	if err != nil {
		return nil, fmt.Errorf("list lock directory: %w", err)
	}
	var out []store.LockInfo
	for _, e := range entries {
		readableName, ok := parseFileName(e.Name())
		if !ok || !e.Type().IsRegular() {
			continue
		}
		path := filepath.Join(b.dir, e.Name())
		id, err := statID(path)
		if err != nil {
			continue
		}
		locks := table[id]
		if len(locks) == 0 {
			continue
		}
		rec := readRecord(path)
		name := rec.Key
		if name == "" {
			name = readableName
		} else if rec.Truncated {
			name += "..."
		}
		for _, l := range locks {
			info := store.LockInfo{Name: name, Mode: l.mode, Granted: l.granted, PID: l.pid}
			if l.granted && l.mode == store.ModeExclusive && rec.PID == l.pid {
				info.Application, info.Since = rec.Program, rec.Since
			}
			out = append(out, info)
		}
	}
	slices.SortStableFunc(out, func(a, b store.LockInfo) int {
		if c := strings.Compare(a.Name, b.Name); c != 0 {
			return c
		}
		switch {
		case a.Granted && !b.Granted:
			return -1
		case b.Granted && !a.Granted:
			return 1
		}
		return 0
	})
	return out, nil
}
