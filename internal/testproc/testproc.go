// Package testproc holds what the tests that run other processes share:
// the test binary re-executed as a child (backendtest, queuetest) or the
// kannuki command (cmd/kannuki).
package testproc

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// Buffer collects a child process's output. Unlike bytes.Buffer it may be
// read while the child still writes to it.
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

// Write appends p.
func (w *Buffer) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

// String returns what was written so far.
func (w *Buffer) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.String()
}

// RunPattern is the -test.run pattern that selects exactly the test named
// name, as t.Name() gives it: one anchored element per level of subtests,
// so that a child runs that test and no other whose name it prefixes.
func RunPattern(name string) string {
	parts := strings.Split(name, "/")
	for i, p := range parts {
		parts[i] = "^" + regexp.QuoteMeta(p) + "$"
	}
	return strings.Join(parts, "/")
}

// Proc is a child process that a test started: it is killed at the end of
// the test if it is still running then.
type Proc struct {
	// Cmd is the running command.
	Cmd *exec.Cmd
	// Out holds the process's standard output and error.
	Out  *Buffer
	done chan struct{}
	err  error // of Cmd.Wait, set before done closes
}

// ReRun starts this test binary again to run only the test named test
// (t.Name() of the caller, or of another test of the binary), with env
// added to this process's environment (DSNs and the like are inherited).
// The child is killed after limit, or at the end of t if sooner; its own
// -test.timeout is a little longer, so that the kill comes first. stdin, if
// not nil, is called with the command before it starts, to set up its
// standard input.
func ReRun(t testing.TB, test string, env []string, limit time.Duration, stdin func(*exec.Cmd) error) (*Proc, error) {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	cmd := exec.CommandContext(ctx, exe,
		"-test.run="+RunPattern(test),
		"-test.count=1",
		"-test.v",
		"-test.timeout="+(limit+20*time.Second).String())
	cmd.Env = append(os.Environ(), env...)
	p := &Proc{Cmd: cmd, Out: &Buffer{}, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = p.Out, p.Out
	cmd.WaitDelay = 5 * time.Second
	if stdin != nil {
		err = stdin(cmd)
	}
	if err == nil {
		err = cmd.Start()
	}
	if err != nil {
		cancel()
		return nil, err
	}
	go func() {
		p.err = cmd.Wait()
		cancel()
		close(p.done)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-p.done
	})
	return p, nil
}

// Done is closed once the process has exited.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Err is what Cmd.Wait returned; call it only after Done is closed.
func (p *Proc) Err() error { return p.err }

// Exited reports whether the process has exited, without waiting.
func (p *Proc) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}
