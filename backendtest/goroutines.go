package backendtest

import (
	"bytes"
	"fmt"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"
)

// goroutineSettle is how long checkGoroutines lets goroutines of closed
// pools and finished waits wind down.
const goroutineSettle = 5 * time.Second

// maxStacks bounds the stacks a goroutine leak report shows.
const maxStacks = 10

// goroutineStacks returns the stacks of all goroutines by id.
func goroutineStacks() map[int]string {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	stacks := map[int]string{}
	for _, g := range bytes.Split(buf, []byte("\n\n")) {
		// "goroutine 42 [chan receive]:"
		head, _, _ := strings.Cut(string(g), " [")
		id, err := strconv.Atoi(strings.TrimPrefix(head, "goroutine "))
		if err == nil {
			stacks[id] = string(g)
		}
	}
	return stacks
}

// currentGoroutine is the id of the calling goroutine.
func currentGoroutine() int {
	buf := make([]byte, 64)
	buf = buf[:runtime.Stack(buf, false)]
	head, _, _ := strings.Cut(string(buf), " [")
	id, _ := strconv.Atoi(strings.TrimPrefix(head, "goroutine "))
	return id
}

// checkGoroutines fails t if goroutines started since before are still
// running once every subtest (and its cleanups: closed pools) is done.
//
// It sees every goroutine of the process, so a test running in parallel with
// Run (t.Parallel in the caller) can make it fail: run the conformance test
// on its own, or use go.uber.org/goleak in TestMain instead.
func checkGoroutines(t *testing.T, before map[int]string) {
	self := currentGoroutine()
	var leaked []string
	deadline := time.Now().Add(goroutineSettle)
	for {
		leaked = leaked[:0]
		for id, stack := range goroutineStacks() {
			if _, old := before[id]; old || id == self || ignorable(stack) {
				continue
			}
			leaked = append(leaked, stack)
		}
		if len(leaked) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if n := len(leaked); n > 0 {
		more := ""
		if n > maxStacks {
			leaked, more = leaked[:maxStacks], fmt.Sprintf("\n\n(%d more)", n-maxStacks)
		}
		t.Errorf("%d goroutines started during the suite are still running %s after it ended:\n\n%s%s",
			n, goroutineSettle, strings.Join(leaked, "\n\n"), more)
	}
}

// ignorable reports goroutines that are not the backend's: tests (a test of
// the caller's running in parallel) and what the runtime starts on demand.
func ignorable(stack string) bool {
	for _, s := range []string{
		"\ncreated by testing.",
		"os/signal.signal_recv",
		"runtime.ensureSigM",
	} {
		if strings.Contains(stack, s) {
			return true
		}
	}
	return false
}
