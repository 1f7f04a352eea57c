package kannukifile

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/kannuki-go/kannuki/store"
)

// readProcLocks reads the flock entries of /proc/locks by file identity.
// Lines look like
//
//	1: FLOCK  ADVISORY  WRITE 1234 fe:00:778396 0 EOF
//	1: -> FLOCK  ADVISORY  WRITE 1240 fe:00:778396 0 EOF
//
// where "->" marks a blocked waiter and the device is major:minor in hex.
func readProcLocks() (map[fileID][]procLock, error) {
	data, err := os.ReadFile("/proc/locks")
	if err != nil {
		return nil, fmt.Errorf("read kernel lock table: %w", err)
	}
	out := make(map[fileID][]procLock)
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		granted := true
		if len(f) > 1 && f[1] == "->" {
			granted = false
			f = append(f[:1], f[2:]...)
		}
		if len(f) < 6 || f[1] != "FLOCK" {
			continue
		}
		mode := store.ModeExclusive
		if f[3] == "READ" {
			mode = store.ModeShared
		}
		pid, _ := strconv.ParseInt(f[4], 10, 64)
		id, ok := parseDevIno(f[5])
		if !ok {
			continue
		}
		out[id] = append(out[id], procLock{pid: pid, mode: mode, granted: granted})
	}
	return out, nil
}

// parseDevIno parses "fe:00:778396" (major and minor in hex, inode in
// decimal) into the identity stat reports.
func parseDevIno(s string) (fileID, bool) {
	parts := strings.Split(s, ":")
	if len(parts) != 3 {
		return fileID{}, false
	}
	major, err1 := strconv.ParseUint(parts[0], 16, 32)
	minor, err2 := strconv.ParseUint(parts[1], 16, 32)
	ino, err3 := strconv.ParseUint(parts[2], 10, 64)
	if err1 != nil || err2 != nil || err3 != nil {
		return fileID{}, false
	}
	// The glibc encoding of dev_t (gnu_dev_makedev), which stat uses.
	dev := (minor & 0xff) | (major&0xfff)<<8 | (minor&^0xff)<<12 | (major&^0xfff)<<32
	return fileID{dev: dev, ino: ino}, true
}
