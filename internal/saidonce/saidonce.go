// Package saidonce checks that an error message says each thing once: one
// "kannuki:" at its start, no part repeated, no quoted name repeated. The
// conformance suite, the Locker's tests and the CLI's tests share it.
package saidonce

import (
	"fmt"
	"regexp"
	"strings"
)

// quoted finds Go-quoted strings, the form keys take in messages.
var quoted = regexp.MustCompile(`"(?:[^"\\]|\\.)*"`)

// Problem returns what is wrong with msg as an error message of the
// Locker: "" when it starts with "kannuki:" and says each thing once.
func Problem(msg string) string {
	if !strings.HasPrefix(msg, "kannuki:") {
		return `it does not start with "kannuki:"`
	}
	return Repeats(msg)
}

// Repeats returns what msg says more than once, or "": the test for a
// backend's own messages, which have no "kannuki:" head of their own (one
// may come from a sentinel they wrap).
func Repeats(msg string) string {
	if n := strings.Count(msg, "kannuki:"); n > 1 {
		return fmt.Sprintf(`it says "kannuki:" %d times`, n)
	}
	seen := map[string]bool{}
	for part := range strings.SplitSeq(msg, ": ") {
		part = strings.TrimSpace(part)
		if part != "" && seen[part] {
			return fmt.Sprintf("it says %q twice", part)
		}
		seen[part] = true
	}
	names := map[string]bool{}
	for _, q := range quoted.FindAllString(msg, -1) {
		if names[q] {
			return fmt.Sprintf("it names %s twice", q)
		}
		names[q] = true
	}
	return ""
}
