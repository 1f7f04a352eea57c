package main

import (
	"strings"
	"testing"
)

// Flags after the command are told to go before it, instead of a
// baffling "--key is required".
func TestFlagsAfterCommand(t *testing.T) {
	for _, args := range [][]string{
		{"run", "ls", "--key", "x"},
		{"run", "ls", "-la", "--key=x"},
		{"run", "--try", "ls", "-key", "x"},
	} {
		code, _, stderr := invoke(t, nil, args...)
		if code != exitError || !strings.Contains(stderr, "flags must come before the command") || strings.Contains(stderr, "is required") {
			t.Errorf("%q: exit %d: %q", args, code, stderr)
		}
	}
	// With --key before the command, flags after it are the command's.
	if code, out, stderr := invoke(t, nil, "run", "--key", uniqueKey(t), "--", "sh", "-c", `echo "$1"`, "sh", "--key"); code != 0 || out != "--key\n" {
		t.Errorf("the command's own --key: exit %d, stdout %q, stderr %q", code, out, stderr)
	}
}
