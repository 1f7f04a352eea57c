package main

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/kannuki-go/kannuki/internal/testproc"
)

// The tests run the built binary, end to end, as a user or a cron job would.
var (
	binary     string // the kannuki binary under test
	runtimeDir string // TMPDIR for the children: holds their private default file-store directory
)

func TestMain(m *testing.M) {
	os.Exit(testMain(m))
}

func testMain(m *testing.M) int {
	dir, err := os.MkdirTemp("", "kannuki-cli-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	binary = filepath.Join(dir, "kannuki")
	build := exec.Command("go", "build", "-o", binary, ".")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building kannuki:", err)
		return 1
	}
	runtimeDir = filepath.Join(dir, "run")
	if err := os.Mkdir(runtimeDir, 0o700); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	code := m.Run()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			return 1
		}
	}
	return code
}

// uniqueKey is a key no other test (or concurrent test run) uses.
func uniqueKey(t testing.TB) string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return "clitest/" + strings.ReplaceAll(t.Name(), "/", "_") + "/" + hex.EncodeToString(b)
}

// proc is a running kannuki.
type proc struct {
	t              testing.TB
	cmd            *exec.Cmd
	stdout, stderr testproc.Buffer
	done           chan struct{}
	code           int
}

// env is the environment of every kannuki the tests start: a private
// file-store directory and no DSN unless a test sets one.
func baseEnv(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "KANNUKI_DSN=") || strings.HasPrefix(kv, "TMPDIR=") {
			continue
		}
		env = append(env, kv)
	}
	return append(append(env, "TMPDIR="+runtimeDir), extra...)
}

// start runs kannuki with args in the background; the process is killed
// at the end of the test if it still runs.
func start(t testing.TB, env []string, args ...string) *proc {
	t.Helper()
	return startWith(t, env, nil, args...)
}

// startWith is start with setup, when not nil, changing the command
// before it starts (another stderr, say).
func startWith(t testing.TB, env []string, setup func(*exec.Cmd), args ...string) *proc {
	t.Helper()
	p := &proc{t: t, cmd: exec.Command(binary, args...), done: make(chan struct{})}
	p.cmd.Env = baseEnv(env...)
	p.cmd.Stdout, p.cmd.Stderr = &p.stdout, &p.stderr
	if setup != nil {
		setup(p.cmd)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		_ = p.cmd.Wait()
		p.code = p.cmd.ProcessState.ExitCode()
		if ws, ok := p.cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			p.code = 128 + int(ws.Signal())
		}
		close(p.done)
	}()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			_ = p.cmd.Process.Kill()
			<-p.done
		}
	})
	return p
}

// hangGuard bounds every wait for a process: generous, only there so a
// broken build fails instead of hanging the suite.
const hangGuard = 30 * time.Second

// wait returns the exit code.
func (p *proc) wait() int {
	p.t.Helper()
	select {
	case <-p.done:
		return p.code
	case <-time.After(hangGuard):
		p.t.Fatalf("kannuki %v still running after %s\nstdout: %s\nstderr: %s", p.cmd.Args[1:], hangGuard, p.stdout.String(), p.stderr.String())
		return -1
	}
}

// exited reports whether the process has ended, without waiting.
func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// invoke runs kannuki to completion and returns its exit code and output.
func invoke(t testing.TB, env []string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	p := start(t, env, args...)
	code = p.wait()
	return code, p.stdout.String(), p.stderr.String()
}

// eventually polls cond until it holds or the hang guard runs out.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(hangGuard)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

func readFile(t testing.TB, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return string(b)
}

func touch(t testing.TB, path string) {
	t.Helper()
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
}

func assertNoSecret(t testing.TB, secret string, outputs ...string) {
	t.Helper()
	for _, o := range outputs {
		if strings.Contains(o, secret) {
			t.Errorf("output contains the password %q:\n%s", secret, o)
		}
	}
}
