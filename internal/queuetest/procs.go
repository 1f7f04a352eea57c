package queuetest

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/kannuki-go/kannuki/internal/testproc"
)

// childEnv names the environment variable that turns a re-executed test
// binary into a child of a multi-process test. Its value is a JSON Spec.
const childEnv = "KANNUKI_QUEUETEST_CHILD"

// ChildLimit bounds a child's life: a child stops waiting for its parent
// after it, and the parent kills a child that outlives it.
const ChildLimit = 2 * HangGuard

// Spec tells a child process what to do.
type Spec struct {
	// Test is the t.Name() of the test that started the child.
	Test string
	// Dir is the directory the parent and its children share: marker
	// files of running work, readiness and counts.
	Dir string
	// Index numbers the children from 0.
	Index int
	// Params are the queue module's own settings, such as the schema,
	// queue or lock key prefix the children share.
	Params map[string]string
}

// ChildSpec reports whether this process is a child started by
// StartChildren, and its Spec. The test calling it should then do the
// child's work and return. A child running another test than the one that
// started it fails t, as the -test.run pattern should have prevented it.
func ChildSpec(t *testing.T) (Spec, bool) {
	t.Helper()
	v := os.Getenv(childEnv)
	if v == "" {
		return Spec{}, false
	}
	var s Spec
	if err := json.Unmarshal([]byte(v), &s); err != nil {
		t.Fatalf("queuetest: child spec %q: %v", v, err)
	}
	if s.Test != t.Name() {
		t.Fatalf("queuetest: child of %s runs %s", s.Test, t.Name())
	}
	return s, true
}

// Children are the child processes of one test: re-executions of the test
// binary that run only that test, each serving the same queue with a
// Runner.
type Children struct {
	dir   string
	procs []*proc
}

// proc is one running child.
type proc struct {
	*testproc.Proc
	index int
	stdin io.WriteCloser // closing it tells the child to stop
}

// StartChildren starts n children of the test t, each with a Spec holding
// params. They inherit the environment (DSNs and the like) and are killed
// at the end of t, or after ChildLimit, if they have not exited by then.
func StartChildren(t *testing.T, n int, params map[string]string) *Children {
	t.Helper()
	if os.Getenv(childEnv) != "" {
		t.Fatal("queuetest: a child process must not start children")
	}
	c := &Children{dir: t.TempDir()}
	for i := range n {
		c.procs = append(c.procs, startChild(t, Spec{Test: t.Name(), Dir: c.dir, Index: i, Params: params}))
	}
	return c
}

func startChild(t *testing.T, spec Spec) *proc {
	t.Helper()
	enc, err := json.Marshal(spec)
	if err != nil {
		t.Fatal(err)
	}
	p := &proc{index: spec.Index}
	// The parent kills a child a little after the child's own limit, so
	// that a child that gave up waiting can still say so.
	p.Proc, err = testproc.ReRun(t, spec.Test, []string{childEnv + "=" + string(enc)}, ChildLimit+10*time.Second,
		func(cmd *exec.Cmd) (err error) {
			p.stdin, err = cmd.StdinPipe()
			return err
		})
	if err != nil {
		t.Fatalf("queuetest: start child %d: %v", spec.Index, err)
	}
	return p
}

// WaitReady waits until every child's Runner.Serve was called, that is its
// queue client works, so that the jobs enqueued next are shared by all the
// children. A child that exits first, or HangGuard passing, fails t.
func (c *Children) WaitReady(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(HangGuard)
	for _, p := range c.procs {
		for {
			_, err := os.Stat(readyFile(c.dir, p.index))
			if err == nil {
				break
			}
			if !errors.Is(err, fs.ErrNotExist) {
				t.Fatal(err)
			}
			if p.Exited() {
				t.Fatalf("child %d exited before it was ready: %v\n%s", p.index, p.Err(), p.output())
			}
			if time.Now().After(deadline) {
				t.Fatalf("child %d not ready within %s\n%s", p.index, HangGuard, p.output())
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}

// Stop tells the children to stop by closing their standard input, waits
// for them to exit, and returns the sum of the Counts they wrote. A child
// that fails, or does not exit within HangGuard, fails t with its output.
func (c *Children) Stop(t *testing.T) Tally {
	t.Helper()
	for _, p := range c.procs {
		_ = p.stdin.Close()
	}
	timer := time.NewTimer(HangGuard)
	defer timer.Stop()
	var tally Tally
	for _, p := range c.procs {
		select {
		case <-p.Done():
		case <-timer.C:
			t.Fatalf("child %d did not exit within %s of being stopped\n%s", p.index, HangGuard, p.output())
		}
		if err := p.Err(); err != nil {
			t.Fatalf("child %d: %v\n%s", p.index, err, p.output())
		}
		b, err := os.ReadFile(countsFile(c.dir, p.index))
		var counts Counts
		if err == nil {
			err = json.Unmarshal(b, &counts)
		}
		if err != nil {
			t.Fatalf("counts of child %d: %v\n%s", p.index, err, p.output())
		}
		tally.add(counts)
	}
	return tally
}

func (p *proc) output() string {
	return fmt.Sprintf("--- output of child %d:\n%s", p.index, p.Out.String())
}

func readyFile(dir string, index int) string {
	return filepath.Join(dir, fmt.Sprintf("ready-%d", index))
}

func countsFile(dir string, index int) string {
	return filepath.Join(dir, fmt.Sprintf("counts-%d.json", index))
}
