package main

import (
	"encoding/json"
	"io"
	"os/exec"
	"strconv"
	"strings"
	"testing"

	"github.com/creack/pty"

	"github.com/kannuki-go/kannuki/internal/testproc"
)

// startOnTerminal starts kannuki with its stderr on a pseudo-terminal (as
// wide as a long key needs) and returns what it writes there.
func startOnTerminal(t *testing.T, env []string, args ...string) (*proc, *testproc.Buffer) {
	t.Helper()
	ptmx, tty, err := pty.Open()
	if err != nil {
		t.Fatalf("opening a pseudo-terminal: %v", err)
	}
	if err := pty.Setsize(ptmx, &pty.Winsize{Rows: 24, Cols: 300}); err != nil {
		t.Fatal(err)
	}
	screen := &testproc.Buffer{}
	read := make(chan struct{})
	go func() {
		defer close(read)
		_, _ = io.Copy(screen, ptmx) // ends with EIO when the last writer closes the terminal
	}()
	p := startWith(t, append(env, "TERM=xterm"), func(c *exec.Cmd) { c.Stderr = tty }, args...)
	tty.Close() // the child has its own copy
	t.Cleanup(func() {
		ptmx.Close()
		<-read
	})
	return p, screen
}

func TestWaiting(t *testing.T) {
	forEachStore(t, func(t *testing.T, s storeCase) {
		t.Run("Terminal", func(t *testing.T) { testWaitingTerminal(t, s) })
		t.Run("Pipe", func(t *testing.T) { testWaitingPipe(t, s) })
		t.Run("QuietAndJSON", func(t *testing.T) { testWaitingQuiet(t, s) })
	})
}

// heldBy is what the waiting line says about the test's holder: its pid
// where the test knows it (the file store's holder is the kannuki
// process), else that some pid is named.
func heldBy(s storeCase, key string, holder *proc) string {
	if s.name == "file" {
		return strconv.Quote(key) + " held by pid " + strconv.Itoa(holder.cmd.Process.Pid) + " "
	}
	return strconv.Quote(key) + " held by pid "
}

// On a terminal the wait is one line redrawn in place with "\r", naming
// the key and its holder, and erased when the lock is granted.
func testWaitingTerminal(t *testing.T, s storeCase) {
	key, f := uniqueKey(t), newFiles(t)
	holder := hold(t, s, f, key)
	waiter, screen := startOnTerminal(t, f.env(), append([]string{"run"}, s.args("--key", key, "--", "sh", "-c", `echo waiter >> "$LOG"`)...)...)
	eventually(t, "the waiting line on the terminal", func() bool {
		if waiter.exited() {
			t.Fatalf("waiter exited %d: %q", waiter.code, screen.String())
		}
		out := screen.String()
		return strings.Contains(out, carriageReturn+"kannuki: waiting ") && strings.Contains(out, heldBy(s, key, holder))
	})
	touch(t, f.gof)
	if code := holder.wait(); code != 0 {
		t.Fatalf("holder exited %d: %s", code, holder.stderr.String())
	}
	if code := waiter.wait(); code != 0 {
		t.Fatalf("waiter exited %d: %q", code, screen.String())
	}
	// The line is erased, and nothing follows: the command's own output
	// starts on a clean line.
	eventually(t, "the waiting line to be erased", func() bool {
		return strings.HasSuffix(screen.String(), eraseLine+carriageReturn+eraseLine)
	})
	if got := readFile(t, f.log); got != "start\nend\nwaiter\n" {
		t.Fatalf("log %q: the waiter did not run strictly after the holder", got)
	}
	if out := screen.String(); strings.Contains(out, "\n") {
		t.Errorf("the terminal got whole lines, not one line in place: %q", out)
	}
}

// Without a terminal the wait is told in plain lines: no carriage
// returns, no escape codes, nothing but the waiting lines.
func testWaitingPipe(t *testing.T, s storeCase) {
	key, f := uniqueKey(t), newFiles(t)
	holder := hold(t, s, f, key)
	waiter := start(t, append(f.env(), "TERM=xterm"), append([]string{"run"}, s.args("--key", key, "--", "sh", "-c", `echo waiter >> "$LOG"`)...)...)
	eventually(t, "the waiting line on stderr", func() bool {
		if waiter.exited() {
			t.Fatalf("waiter exited %d: %q", waiter.code, waiter.stderr.String())
		}
		out := waiter.stderr.String()
		return strings.Contains(out, "\n") && strings.Contains(out, heldBy(s, key, holder))
	})
	touch(t, f.gof)
	holder.wait()
	if code := waiter.wait(); code != 0 {
		t.Fatalf("waiter exited %d: %s", code, waiter.stderr.String())
	}
	out := waiter.stderr.String()
	if strings.ContainsAny(out, "\r\x1b") {
		t.Errorf("progress display on a pipe: %q", out)
	}
	for _, line := range strings.Split(strings.TrimSuffix(out, "\n"), "\n") {
		if !strings.HasPrefix(line, "kannuki: waiting ") || !strings.Contains(line, strconv.Quote(key)) {
			t.Errorf("stderr line %q is not a waiting line", line)
		}
	}
}

// -q says nothing about a wait, and --json keeps stderr to its one result
// line. The waits run out (--timeout), so they surely last longer than
// the moment after which a wait is shown.
func testWaitingQuiet(t *testing.T, s storeCase) {
	key, f := uniqueKey(t), newFiles(t)
	holder := hold(t, s, f, key)
	quiet := start(t, nil, append([]string{"run"}, s.args("-q", "--timeout", "2s", "--key", key, "--", "true")...)...)
	jsonOut := start(t, nil, append([]string{"run"}, s.args("--json", "--timeout", "2s", "--key", key, "--", "true")...)...)
	if code := quiet.wait(); code != exitNotAcquired || quiet.stderr.String() != "" {
		t.Errorf("-q: exit %d, stderr %q; want %d and nothing", code, quiet.stderr.String(), exitNotAcquired)
	}
	if code := jsonOut.wait(); code != exitNotAcquired {
		t.Errorf("--json: exit %d, want %d", code, exitNotAcquired)
	}
	var r runResult
	if out := jsonOut.stderr.String(); strings.Count(out, "\n") != 1 || json.Unmarshal([]byte(out), &r) != nil || r.Result != "not_acquired" {
		t.Errorf("--json: stderr %q, want only the result line", out)
	}
	touch(t, f.gof)
	holder.wait()
}

func TestFitWidth(t *testing.T) {
	for _, c := range []struct {
		line  string
		width int
		want  string
	}{
		{"kannuki: waiting", 80, "kannuki: waiting"},
		{"kannuki: waiting", 8, "kannuki"},
		{"kannuki: waiting", 1, ""},
		{"kannuki: waiting", 0, ""},
		{"鍵を待つ", 6, "鍵を"}, // two columns each, the last column left free
		{"ключ", 4, "клю"},
	} {
		if got := fitWidth(c.line, c.width); got != c.want {
			t.Errorf("fitWidth(%q, %d) = %q, want %q", c.line, c.width, got, c.want)
		}
	}
}
