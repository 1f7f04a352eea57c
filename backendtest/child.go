package backendtest

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/kannuki-go/kannuki/store"

	"github.com/kannuki-go/kannuki/internal/testproc"
)

// childEnv names the environment variable that turns a re-executed test
// binary into a child of a cross-process case. Its value is a JSON childSpec.
const childEnv = "KANNUKI_BACKENDTEST_CHILD"

// childLimit bounds a child's whole life; the parent kills it after that.
const childLimit = 2 * time.Minute

// Child roles.
const (
	roleExclusion = "exclusion" // contend for the key, counting in Dir
	roleHold      = "hold"      // take the key, say so in Dir, sleep until killed
)

// childSpec tells a child process what to do.
type childSpec struct {
	Test       string    // t.Name() of the Run call that spawned it
	Role       string    // roleExclusion or roleHold
	Key        store.Key // the key to lock
	Dir        string    // shared temporary directory
	Index      int       // process number, for file names and messages
	Cycles     int       // roleExclusion: lock cycles of this process
	Goroutines int       // roleExclusion: contending goroutines
}

func childSpecFromEnv() (childSpec, bool) {
	v := os.Getenv(childEnv)
	if v == "" {
		return childSpec{}, false
	}
	var spec childSpec
	if err := json.Unmarshal([]byte(v), &spec); err != nil {
		return childSpec{Role: "invalid: " + err.Error()}, true
	}
	return spec, true
}

// runChild plays a child's role inside the re-executed test.
func runChild(t *testing.T, h Harness, spec childSpec) {
	if spec.Test != t.Name() {
		// Another Run in the same binary; the -test.run pattern should
		// have filtered it out. Do nothing, and certainly spawn nothing.
		t.Skipf("backendtest: child process of %s", spec.Test)
	}
	switch spec.Role {
	case roleExclusion:
		childExclusion(t, h, spec)
	case roleHold:
		childHold(t, h, spec)
	default:
		t.Fatalf("backendtest: unknown child role %q", spec.Role)
	}
	// End the test here, so that nothing the caller wrote after Run runs
	// in the child (deferred calls and cleanups still do).
	if t.Failed() {
		t.FailNow()
	}
	t.SkipNow()
}

// childHold takes the key, announces it, and sleeps until the parent kills
// the process (bounded by childLimit in case the parent is gone).
func childHold(t *testing.T, h Harness, spec childSpec) {
	b := h.New(t)
	ctx, cancel := context.WithTimeout(context.Background(), childLimit)
	defer cancel()
	l, err := b.Acquire(ctx, spec.Key, excl(store.WaitForever))
	if err != nil {
		t.Fatalf("child: Acquire: %v", err)
	}
	if err := os.WriteFile(filepath.Join(spec.Dir, "held"), []byte(strconv.Itoa(os.Getpid())), 0o600); err != nil {
		t.Fatalf("child: %v", err)
	}
	<-ctx.Done()
	_ = l.Release(context.Background())
	t.Errorf("child: still alive after %s; the parent should have killed it", childLimit)
}

// child is a running child process.
type child struct{ *testproc.Proc }

// startChild re-executes the test binary to play spec.Role. The child
// inherits the environment (DSNs and the like), runs only the test that
// called Run, and is killed at the end of t or after childLimit.
func (s *suite) startChild(t *testing.T, spec childSpec) *child {
	t.Helper()
	if _, ok := childSpecFromEnv(); ok {
		t.Fatal("backendtest: a child process must not start children")
	}
	spec.Test = s.runName
	enc, err := json.Marshal(spec)
	if err != nil {
		t.Fatal(err)
	}
	p, err := testproc.ReRun(t, s.runName, []string{childEnv + "=" + string(enc)}, childLimit, nil)
	if err != nil {
		t.Fatalf("start child %s#%d: %v", spec.Role, spec.Index, err)
	}
	return &child{p}
}

// wait waits for the child to exit and reports a failure with its output.
func (c *child) wait(t testing.TB, name string) bool {
	t.Helper()
	select {
	case <-c.Done():
	case <-time.After(childLimit + 10*time.Second):
		t.Errorf("%s: did not exit", name)
		return false
	}
	if err := c.Err(); err != nil {
		t.Errorf("%s failed: %v\n--- output of %s:\n%s", name, err, name, c.Out.String())
		return false
	}
	return true
}

// kill sends SIGKILL and waits for the process to be gone.
func (c *child) kill(t testing.TB) {
	t.Helper()
	if err := c.Cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
		t.Errorf("kill child: %v", err)
	}
	<-c.Done()
}
