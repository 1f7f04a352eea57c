//go:build linux || darwin || dragonfly || freebsd || netbsd || openbsd

package kannukifile

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kannuki-go/kannuki/store"

	"go.uber.org/goleak"
)

// childEnv carries a child process's role, when the test binary is
// re-executed as one: "exclusion <dir> <key> <datadir> <goroutines> <cycles>"
// or "hold <dir> <key> <mode>".
const childEnv = "KANNUKIFILE_TEST_CHILD"

func TestMain(m *testing.M) {
	if spec := os.Getenv(childEnv); spec != "" {
		os.Exit(runChild(strings.Split(spec, "\x1f")))
	}
	goleak.VerifyTestMain(m)
}

// hangGuard only turns a hang into a failure; it is never a timing assertion.
const hangGuard = 20 * time.Second

func runChild(args []string) int {
	b, err := New(args[1], Options{})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	k := store.Key{String: args[2]}
	switch args[0] {
	case "hold":
		req := store.Request{Mode: store.ModeExclusive}
		if args[3] == "shared" {
			req.Mode = store.ModeShared
		}
		if _, err := b.Acquire(context.Background(), k, req); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 2
		}
		fmt.Println("held")
		_, _ = io.Copy(io.Discard, os.Stdin) // hold until killed or stdin closes
		return 0
	case "exclusion":
		g, _ := strconv.Atoi(args[4])
		n, _ := strconv.Atoi(args[5])
		if err := exclusionWorkers(b, k, args[3], g, n); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		return 0
	}
	fmt.Fprintln(os.Stderr, "unknown child role", args[0])
	return 2
}

// exclusionWorkers runs goroutines*cycles lock cycles. Inside the lock each
// creates a marker file exclusively (a second holder's create fails) and
// increments a counter file by read-then-write (a second holder loses an
// update); both live in datadir, outside the lock directory.
func exclusionWorkers(b *Backend, k store.Key, datadir string, goroutines, cycles int) error {
	marker, counter := datadir+"/inside", datadir+"/counter"
	var wg sync.WaitGroup
	errs := make(chan error, goroutines)
	for range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range cycles {
				if err := exclusionCycle(b, k, marker, counter); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	return <-errs
}

func exclusionCycle(b *Backend, k store.Key, marker, counter string) error {
	ctx, cancel := context.WithTimeout(context.Background(), hangGuard)
	defer cancel()
	l, err := b.Acquire(ctx, k, store.Request{Mode: store.ModeExclusive, Wait: store.WaitForever})
	if err != nil {
		return err
	}
	m, err := os.OpenFile(marker, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		l.Release(ctx)
		return fmt.Errorf("pid %d: two holders at once: %w", os.Getpid(), err)
	}
	m.Close()
	data, err := os.ReadFile(counter)
	if err == nil {
		var n int
		n, err = strconv.Atoi(strings.TrimSpace(string(data)))
		if err == nil {
			err = os.WriteFile(counter, []byte(strconv.Itoa(n+1)), 0o600)
		}
	}
	if rerr := os.Remove(marker); err == nil {
		err = rerr
	}
	if rerr := l.Release(ctx); err == nil {
		err = rerr
	}
	return err
}

// child is a re-executed test binary.
type child struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	out   *bufio.Reader
	errb  *strings.Builder
}

func startChild(t *testing.T, args ...string) *child {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+strings.Join(args, "\x1f"))
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var errb strings.Builder
	cmd.Stderr = &errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	c := &child{cmd: cmd, stdin: stdin, out: bufio.NewReader(stdout), errb: &errb}
	t.Cleanup(func() {
		stdin.Close()
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	return c
}

// expectLine waits (bounded) for the child to print want.
func (c *child) expectLine(t *testing.T, want string) {
	t.Helper()
	got := make(chan string, 1)
	go func() {
		line, _ := c.out.ReadString('\n')
		got <- strings.TrimSpace(line)
	}()
	select {
	case line := <-got:
		if line != want {
			_ = c.cmd.Process.Kill()
			_ = c.cmd.Wait()
			t.Fatalf("child printed %q, want %q; stderr: %s", line, want, c.errb.String())
		}
	case <-time.After(hangGuard):
		t.Fatalf("child did not print %q", want)
	}
}

func TestCrossProcessExclusion(t *testing.T) {
	dir, data := t.TempDir(), t.TempDir()
	if err := os.WriteFile(data+"/counter", []byte("0"), 0o600); err != nil {
		t.Fatal(err)
	}
	const procs, goroutines = 3, 8
	cycles := 50
	if testing.Short() {
		cycles = 15
	}
	key := t.Name() + "/counter"
	var children []*child
	for range procs {
		children = append(children, startChild(t, "exclusion", dir, key, data, strconv.Itoa(goroutines), strconv.Itoa(cycles)))
	}
	for i, c := range children {
		c.stdin.Close()
		if err := c.cmd.Wait(); err != nil {
			t.Errorf("child %d: %v; stderr: %s", i, err, c.errb.String())
		}
	}
	got, err := os.ReadFile(data + "/counter")
	if err != nil {
		t.Fatal(err)
	}
	if want := strconv.Itoa(procs * goroutines * cycles); string(got) != want {
		t.Fatalf("counter %s, want %s: holders in different processes overlapped", got, want)
	}
}

func TestKilledHolderFreesLock(t *testing.T) {
	dir := t.TempDir()
	b := newBackend(t, dir)
	k := store.Key{String: t.Name()}
	c := startChild(t, "hold", dir, k.String, "exclusive")
	c.expectLine(t, "held")

	ctx := context.Background()
	if held, err := b.Held(ctx, k); err != nil || !held {
		t.Fatalf("Held while a child holds it: %v, %v", held, err)
	}
	if _, err := b.Acquire(ctx, k, excl(0)); !errors.Is(err, store.ErrNotAcquired) {
		t.Fatalf("try while a child holds it: %v", err)
	}
	wait := async(ctx, b, k, excl(hangGuard))
	pending(t, wait, "waiter while the child holds")
	if err := c.cmd.Process.Kill(); err != nil { // SIGKILL: no cleanup in the child
		t.Fatal(err)
	}
	r := await(t, wait)
	if r.err != nil {
		t.Fatalf("waiter after the holder was killed: %v", r.err)
	}
	mustRelease(t, r.l)
}

func TestCrossProcessShared(t *testing.T) {
	dir := t.TempDir()
	b := newBackend(t, dir)
	k := store.Key{String: t.Name()}
	c := startChild(t, "hold", dir, k.String, "shared")
	c.expectLine(t, "held")
	ctx := context.Background()
	mustRelease(t, mustAcquire(t, b, k, shared(0)))
	if _, err := b.Acquire(ctx, k, excl(0)); !errors.Is(err, store.ErrNotAcquired) {
		t.Fatalf("exclusive try while a child holds shared: %v", err)
	}
	wait := async(ctx, b, k, excl(hangGuard))
	pending(t, wait, "writer while a child reads")
	c.stdin.Close() // the child exits and its lock goes with it
	r := await(t, wait)
	if r.err != nil {
		t.Fatal(r.err)
	}
	mustRelease(t, r.l)
}
