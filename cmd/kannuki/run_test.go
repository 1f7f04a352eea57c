package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// holdScript logs "start" to $LOG, writes its pid to $READY (through a
// rename, so that $READY never exists without its content), waits until $GO exists,
// then logs "end". The command itself holds the lock for as long as the
// test wants, so overlaps are real and need no sleeps in the test.
const holdScript = `echo start >> "$LOG"; echo $$ > "$READY.tmp"; mv "$READY.tmp" "$READY"; while [ ! -e "$GO" ]; do sleep 0.02; done; echo end >> "$LOG"`

// files is the scratch files of one test and the environment naming them.
type files struct {
	dir, log, ready, gof, mark string
}

func newFiles(t *testing.T) files {
	d := t.TempDir()
	return files{dir: d, log: filepath.Join(d, "log"), ready: filepath.Join(d, "ready"), gof: filepath.Join(d, "go"), mark: filepath.Join(d, "mark")}
}

func (f files) env() []string {
	return []string{"LOG=" + f.log, "READY=" + f.ready, "GO=" + f.gof, "MARK=" + f.mark}
}

// hold starts a kannuki holding key until f.gof is created.
func hold(t *testing.T, s storeCase, f files, key string, flags ...string) *proc {
	t.Helper()
	args := append([]string{"run"}, s.args(flags...)...)
	args = append(args, "--key", key, "--", "sh", "-c", holdScript)
	p := start(t, f.env(), args...)
	awaitStarted(t, p, f)
	return p
}

// awaitStarted returns once p's command has written f.ready.
func awaitStarted(t *testing.T, p *proc, f files) {
	t.Helper()
	eventually(t, "the command to start", func() bool {
		if p.exited() {
			t.Fatalf("kannuki exited with %d before its command started: %s", p.code, p.stderr.String())
		}
		// The scripts rename $READY into place whole; a complete line is
		// checked anyway, as the condition the tests rely on.
		b, err := os.ReadFile(f.ready)
		return err == nil && len(b) > 0 && b[len(b)-1] == '\n'
	})
}

func TestRun(t *testing.T) {
	forEachStore(t, func(t *testing.T, s storeCase) {
		t.Run("TryRunsCommandOnce", func(t *testing.T) { testTryRunsOnce(t, s) })
		t.Run("ExitCodePassesThrough", func(t *testing.T) { testExitCode(t, s) })
		t.Run("SIGTERMReachesCommandAndFreesLock", func(t *testing.T) { testSIGTERM(t, s) })
		t.Run("WaiterRunsAfterHolder", func(t *testing.T) { testWaiter(t, s) })
		t.Run("Timeout", func(t *testing.T) { testTimeout(t, s) })
		t.Run("SignalWhileWaiting", func(t *testing.T) { testSignalWhileWaiting(t, s) })
		t.Run("KilledKannukiKillsCommand", func(t *testing.T) { testKilled(t, s) })
		t.Run("StatusAndLocks", func(t *testing.T) { testStatusAndLocks(t, s) })
		if s.kill != nil {
			t.Run("LockLost", func(t *testing.T) { testLockLost(t, s) })
		}
	})
}

// Three kannukis race for one key with --try: exactly one runs the command
// (which holds until the test lets it go); the others exit 75 at once.
func testTryRunsOnce(t *testing.T, s storeCase) {
	key, f := uniqueKey(t), newFiles(t)
	args := append([]string{"run"}, s.args("--try", "--key", key, "--", "sh", "-c", holdScript)...)
	ps := []*proc{start(t, f.env(), args...), start(t, f.env(), args...), start(t, f.env(), args...)}
	// The winner cannot exit before $GO exists, so the first two exits
	// must be the losers.
	for range 2 {
		p := firstExit(t, ps)
		if p.code != exitNotAcquired {
			t.Fatalf("a racing kannuki exited %d, want %d (not acquired)\nstderr: %s", p.code, exitNotAcquired, p.stderr.String())
		}
		if !strings.Contains(p.stderr.String(), "not acquired") {
			t.Errorf("loser's stderr does not say why: %q", p.stderr.String())
		}
		ps = remove(ps, p)
	}
	eventually(t, "the winner's command to start", func() bool { return fileExists(f.ready) })
	touch(t, f.gof)
	if code := ps[0].wait(); code != 0 {
		t.Fatalf("winner exited %d: %s", code, ps[0].stderr.String())
	}
	if got := readFile(t, f.log); got != "start\nend\n" {
		t.Fatalf("command log = %q, want exactly one run", got)
	}
}

func firstExit(t *testing.T, ps []*proc) *proc {
	t.Helper()
	deadline := time.Now().Add(hangGuard)
	for time.Now().Before(deadline) {
		for _, p := range ps {
			if p.exited() {
				return p
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatal("no kannuki exited")
	return nil
}

func remove(ps []*proc, p *proc) []*proc {
	var out []*proc
	for _, q := range ps {
		if q != p {
			out = append(out, q)
		}
	}
	return out
}

func testExitCode(t *testing.T, s storeCase) {
	key := uniqueKey(t)
	for _, c := range []struct {
		script string
		want   int
	}{
		{"exit 0", 0},
		{"exit 1", 1},
		{"exit 42", 42},
		{"exit 75", 75}, // indistinguishable from "not acquired" by the code alone; --json tells
		{"kill -KILL $$", 128 + 9},
	} {
		code, _, stderr := invoke(t, nil, append([]string{"run"}, s.args("--json", "--key", key, "--", "sh", "-c", c.script)...)...)
		if code != c.want {
			t.Errorf("%q: exit %d, want %d; stderr %s", c.script, code, c.want, stderr)
		}
		res := lastJSON(t, stderr)
		if res.Result != "ran" || res.ExitCode != c.want || res.CommandExit == nil || *res.CommandExit != c.want {
			t.Errorf("%q: --json result %+v", c.script, res)
		}
	}
	// The lock was released each time.
	if code, _, stderr := invoke(t, nil, append([]string{"run"}, s.args("--try", "--key", key, "--", "true")...)...); code != 0 {
		t.Fatalf("lock left held: --try exit %d: %s", code, stderr)
	}
}

// lastJSON decodes the result line "kannuki run --json" ends stderr with.
func lastJSON(t *testing.T, stderr string) runResult {
	t.Helper()
	lines := strings.Split(strings.TrimSpace(stderr), "\n")
	var r runResult
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &r); err != nil {
		t.Fatalf("no JSON result line in stderr %q: %v", stderr, err)
	}
	return r
}

func testSIGTERM(t *testing.T, s storeCase) {
	key, f := uniqueKey(t), newFiles(t)
	script := `trap 'echo term > "$MARK"; exit 3' TERM; echo $$ > "$READY.tmp"; mv "$READY.tmp" "$READY"; while :; do sleep 0.02; done`
	p := start(t, f.env(), append([]string{"run"}, s.args("--key", key, "--", "sh", "-c", script)...)...)
	awaitStarted(t, p, f)
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := p.wait(); code != 3 {
		t.Fatalf("kannuki exited %d, want the command's 3: %s", code, p.stderr.String())
	}
	if got := readFile(t, f.mark); got != "term\n" {
		t.Fatalf("the command did not get SIGTERM: marker %q", got)
	}
	if code, _, stderr := invoke(t, nil, append([]string{"run"}, s.args("--try", "--key", key, "--", "true")...)...); code != 0 {
		t.Fatalf("lock not freed: --try exit %d: %s", code, stderr)
	}
}

// awaitWaiting returns once p is waiting for key: listed as a waiter where
// the store shows waiters, else logging its attempt (-v).
func awaitWaiting(t *testing.T, s storeCase, p *proc, key string) {
	t.Helper()
	eventually(t, "the second kannuki to wait", func() bool {
		if p.exited() {
			t.Fatalf("waiter exited %d: %s", p.code, p.stderr.String())
		}
		if !strings.Contains(p.stderr.String(), "kannuki: attempt") {
			return false
		}
		if !s.waiters {
			return true
		}
		_, out, _ := invoke(t, nil, append([]string{"status"}, s.args("--json", key)...)...)
		var st statusJSON
		return json.Unmarshal([]byte(out), &st) == nil && len(st.Waiters) > 0
	})
}

func testWaiter(t *testing.T, s storeCase) {
	key, f := uniqueKey(t), newFiles(t)
	holder := hold(t, s, f, key)
	waiter := start(t, f.env(), append([]string{"run"}, s.args("-v", "--key", key, "--", "sh", "-c", `echo waiter >> "$LOG"`)...)...)
	awaitWaiting(t, s, waiter, key)
	touch(t, f.gof)
	if code := holder.wait(); code != 0 {
		t.Fatalf("holder exited %d: %s", code, holder.stderr.String())
	}
	if code := waiter.wait(); code != 0 {
		t.Fatalf("waiter exited %d: %s", code, waiter.stderr.String())
	}
	if got := readFile(t, f.log); got != "start\nend\nwaiter\n" {
		t.Fatalf("log %q: the waiter did not run strictly after the holder", got)
	}
}

func testTimeout(t *testing.T, s storeCase) {
	key, f := uniqueKey(t), newFiles(t)
	holder := hold(t, s, f, key)
	const wait = 300 * time.Millisecond
	began := time.Now()
	code, _, stderr := invoke(t, nil, append([]string{"run"}, s.args("--timeout", wait.String(), "--json", "--key", key, "--", "sh", "-c", `echo late >> "$LOG"`)...)...)
	if elapsed := time.Since(began); elapsed < wait {
		t.Errorf("gave up after %s, before the %s timeout", elapsed, wait)
	}
	if code != exitNotAcquired {
		t.Fatalf("exit %d, want %d: %s", code, exitNotAcquired, stderr)
	}
	if r := lastJSON(t, stderr); r.Result != "not_acquired" || r.Reason != "timeout" {
		t.Errorf("--json result %+v, want not_acquired/timeout", r)
	}
	// --conflict-exit-code, and -q silences the message.
	code, _, stderr = invoke(t, nil, append([]string{"run"}, s.args("--try", "-q", "--conflict-exit-code", "9", "--key", key, "--", "true")...)...)
	if code != 9 || stderr != "" {
		t.Errorf("--try -q --conflict-exit-code 9: exit %d, stderr %q", code, stderr)
	}
	touch(t, f.gof)
	holder.wait()
	if got := readFile(t, f.log); strings.Contains(got, "late") {
		t.Fatalf("the command ran without the lock: %q", got)
	}
}

func testSignalWhileWaiting(t *testing.T, s storeCase) {
	key, f := uniqueKey(t), newFiles(t)
	holder := hold(t, s, f, key)
	waiter := start(t, f.env(), append([]string{"run"}, s.args("-v", "--key", key, "--", "sh", "-c", `echo waiter >> "$LOG"`)...)...)
	awaitWaiting(t, s, waiter, key)
	if err := waiter.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := waiter.wait(); code != 128+int(syscall.SIGTERM) {
		t.Fatalf("interrupted waiter exited %d, want %d: %s", code, 128+int(syscall.SIGTERM), waiter.stderr.String())
	}
	touch(t, f.gof)
	holder.wait()
	if got := readFile(t, f.log); got != "start\nend\n" {
		t.Fatalf("log %q: the interrupted waiter ran its command", got)
	}
	if code, _, stderr := invoke(t, nil, append([]string{"run"}, s.args("--try", "--key", key, "--", "true")...)...); code != 0 {
		t.Fatalf("lock left held: --try exit %d: %s", code, stderr)
	}
}

// When kannuki dies by SIGKILL its lock dies with it, so the command must
// not run on unprotected: the kernel kills it too (Linux).
func testKilled(t *testing.T, s storeCase) {
	key, f := uniqueKey(t), newFiles(t)
	holder := hold(t, s, f, key)
	pid, err := strconv.Atoi(strings.TrimSpace(readFile(t, f.ready)))
	if err != nil {
		t.Fatal(err)
	}
	if err := holder.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	holder.wait()
	eventually(t, "the orphaned command to die", func() bool { return gone(pid) })
	if got := readFile(t, f.log); got != "start\n" {
		t.Fatalf("log %q: the command went on after kannuki died", got)
	}
	// The lock is free again (database session closed, file closed).
	eventually(t, "the lock to be free", func() bool {
		code, _, _ := invoke(t, nil, append([]string{"run"}, s.args("--try", "-q", "--key", key, "--", "true")...)...)
		return code == 0
	})
}

// status and locks show a held key and its holder, and a waiter where the
// store shows waiters (MariaDB without the performance schema lists a held
// lock only while someone waits for it, hence the waiter).
// gone reports whether process pid has ended: no such process, or a
// zombie that its new parent (an init that may reap slowly) has not reaped.
func gone(pid int) bool {
	if syscall.Kill(pid, 0) == syscall.ESRCH {
		return true
	}
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return os.IsNotExist(err)
	}
	// pid (comm) STATE ...; comm may contain spaces and parentheses.
	i := strings.LastIndexByte(string(stat), ')')
	return i >= 0 && i+2 < len(stat) && stat[i+2] == 'Z'
}

func testStatusAndLocks(t *testing.T, s storeCase) {
	key, f := uniqueKey(t), newFiles(t)
	k := derive(t, key)
	holder := hold(t, s, f, key)
	waiter := start(t, f.env(), append([]string{"run"}, s.args("-v", "--key", key, "--", "true")...)...)
	awaitWaiting(t, s, waiter, key)

	code, out, stderr := invoke(t, nil, append([]string{"status"}, s.args(key)...)...)
	if code != exitHeld || !strings.Contains(out, "held") || !strings.Contains(out, key) || !strings.Contains(out, "holder  pid ") {
		t.Errorf("status of a held key: exit %d\nstdout: %s\nstderr: %s", code, out, stderr)
	}
	if s.waiters && !strings.Contains(out, "waiter  pid ") {
		t.Errorf("status does not show the waiter:\n%s", out)
	}
	// Flags may follow the key.
	code, out, stderr = invoke(t, nil, append([]string{"status", key}, s.args("--json")...)...)
	var st statusJSON
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("status --json: %v\nstdout: %s\nstderr: %s", err, out, stderr)
	}
	if code != exitHeld || !st.Held || st.Key != key || len(st.Holders) != 1 || st.Holders[0].PID == 0 || !st.Holders[0].Granted {
		t.Errorf("status --json of a held key: exit %d, %+v", code, st)
	}
	if s.waiters && (len(st.Waiters) != 1 || st.Waiters[0].Granted || st.Waiters[0].PID == 0) {
		t.Errorf("status --json waiters: %+v", st.Waiters)
	}
	if s.name == "file" && len(st.Holders) == 1 && st.Holders[0].PID != int64(holder.cmd.Process.Pid) {
		t.Errorf("file store holder pid %d, want kannuki's %d", st.Holders[0].PID, holder.cmd.Process.Pid)
	}

	// locks: the key shows by name, or by id where PostgreSQL no longer
	// has the lock statement as the session's last query.
	code, out, stderr = invoke(t, nil, append([]string{"locks"}, s.args()...)...)
	idText := "(id " + strconv.FormatInt(k.ID, 10) + ")"
	if code != 0 || !strings.Contains(out, "STATE") || !strings.Contains(out, "held ") || !(strings.Contains(out, key) || s.name == "postgres" && strings.Contains(out, idText)) {
		t.Errorf("locks: exit %d\nstdout: %s\nstderr: %s", code, out, stderr)
	}
	code, out, stderr = invoke(t, nil, append([]string{"locks"}, s.args("--json")...)...)
	var ls struct{ Locks []lockJSON }
	if err := json.Unmarshal([]byte(out), &ls); err != nil || code != 0 {
		t.Fatalf("locks --json: exit %d, %v\nstdout: %s\nstderr: %s", code, err, out, stderr)
	}
	var held, waiting int
	for _, l := range ls.Locks {
		if l.Name == key || s.name == "mysql" && strings.EqualFold(l.Name, k.Name) || s.name == "postgres" && l.ID == k.ID {
			if l.Granted {
				held++
			} else {
				waiting++
			}
		}
	}
	if held != 1 || s.waiters && waiting != 1 {
		t.Errorf("locks --json lists %q %d times held, %d waiting: %s", key, held, waiting, out)
	}

	touch(t, f.gof)
	holder.wait()
	waiter.wait()
	code, out, _ = invoke(t, nil, append([]string{"status"}, s.args(key)...)...)
	if code != 0 || !strings.Contains(out, "free") {
		t.Errorf("status of a released key: exit %d: %s", code, out)
	}
}

func testLockLost(t *testing.T, s storeCase) {
	key, f := uniqueKey(t), newFiles(t)
	script := `trap 'echo term > "$MARK"; exit 0' TERM; echo $$ > "$READY.tmp"; mv "$READY.tmp" "$READY"; while :; do sleep 0.02; done`
	p := start(t, f.env(), append([]string{"run"}, s.args("--keepalive", "100ms", "--grace", "20s", "--json", "--key", key, "--", "sh", "-c", script)...)...)
	awaitStarted(t, p, f)
	s.kill(t, key)
	if code := p.wait(); code != exitLockLost {
		t.Fatalf("exit %d, want %d (lock lost): %s", code, exitLockLost, p.stderr.String())
	}
	if got := readFile(t, f.mark); got != "term\n" {
		t.Errorf("the command did not get SIGTERM on lock loss: marker %q", got)
	}
	if r := lastJSON(t, p.stderr.String()); r.Result != "lock_lost" || !strings.Contains(r.Error, "lost") {
		t.Errorf("--json result %+v", r)
	}

	// A command that ignores SIGTERM gets SIGKILL after --grace.
	key, f = uniqueKey(t), newFiles(t)
	script = `trap '' TERM; echo $$ > "$READY.tmp"; mv "$READY.tmp" "$READY"; while :; do sleep 0.02; done`
	p = start(t, f.env(), append([]string{"run"}, s.args("--keepalive", "100ms", "--grace", "200ms", "--key", key, "--", "sh", "-c", script)...)...)
	awaitStarted(t, p, f)
	s.kill(t, key)
	if code := p.wait(); code != exitLockLost {
		t.Fatalf("exit %d, want %d (lock lost): %s", code, exitLockLost, p.stderr.String())
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(readFile(t, f.ready)))
	if pid == 0 || !gone(pid) {
		t.Errorf("the command %d survived the lost lock", pid)
	}
}
