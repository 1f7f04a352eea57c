package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/kannuki-go/kannuki"
)

const usageRun = `Usage: kannuki run [flags] --key KEY [--] COMMAND [ARGS...]

Runs COMMAND while holding the lock KEY, like flock(1), and across hosts
when --dsn names a database. The lock is released when COMMAND exits.

  kannuki run --key nightly-report --try -- ./report.sh
  kannuki run --key deploy --timeout 5m --dsn postgres://app@db/app -- make deploy

--key is required: deriving it from the command line would make unrelated
jobs such as two "sh -c ..." exclude each other, and a changed argument
stop excluding. Flags go before COMMAND; put "--" before it when it starts
with a dash.

Waiting: by default kannuki waits for the lock as long as it takes;
--timeout 30s waits up to 30 s (a plain number means seconds); --try or
--timeout 0 tries once. Not acquired: exit 75, COMMAND is not run.

A wait that lasts more than a second is shown on stderr: the key, who
holds it (pid, application, client and since when, where the store tells)
and the time waited. On a terminal that is one line updated in place and
erased when the wait ends; otherwise (a pipe, a log, cron, TERM=dumb, or
with -v) a plain line when the wait starts and one a minute after that.
-q and --json show nothing of it.

Signals: SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1 and SIGUSR2 are
forwarded to COMMAND (a Ctrl-C at a terminal reaches COMMAND directly too,
as it shares kannuki's process group); while still waiting, they abandon
the wait. On Linux COMMAND is killed if kannuki itself is killed, since
its lock dies with kannuki. COMMAND inherits stdin, stdout, stderr and the
environment, plus KANNUKI_KEY (the full key).

Lock loss (database session killed, database restarted) is found by a
keepalive on the lock's connection every --keepalive: COMMAND then gets
SIGTERM, and SIGKILL after --grace, and kannuki exits 70.

` + usageExitCodes

// forwarded are the signals passed on to the command. Ctrl-Z (SIGTSTP) and
// window changes reach it through the terminal's process group anyway.
var forwarded = []os.Signal{syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT, syscall.SIGUSR1, syscall.SIGUSR2}

type runFlags struct {
	common
	key, prefix  string
	wait         waitFlag
	try, shared  bool
	quiet        bool
	keepalive    time.Duration
	grace        time.Duration
	conflictCode int
}

// runResult is what "kannuki run --json" prints on stderr when it ends:
// one JSON object on one line (stdout belongs to the command).
type runResult struct {
	Key           string   `json:"key"`
	Result        string   `json:"result"` // ran, not_acquired, lock_lost, interrupted, error
	ExitCode      int      `json:"exit_code"`
	Reason        string   `json:"reason,omitempty"` // not_acquired: held, timeout, deadlock
	CommandExit   *int     `json:"command_exit_code,omitempty"`
	CommandSignal *int     `json:"command_signal,omitempty"`
	WaitedSeconds *float64 `json:"waited_seconds,omitempty"`
	HeldSeconds   *float64 `json:"held_seconds,omitempty"`
	Error         string   `json:"error,omitempty"`
}

func seconds(d time.Duration) *float64 {
	s := d.Seconds()
	return &s
}

func (a *app) run(ctx context.Context, args []string) int {
	f := runFlags{}
	fs := a.flagSet("run", usageRun)
	f.register(fs)
	fs.StringVar(&f.key, "key", "", "lock `KEY` (required)")
	fs.StringVar(&f.prefix, "prefix", "", "key `PREFIX`: the lock is PREFIX/KEY")
	fs.Var(&f.wait, "timeout", "wait up to `D` for the lock (30s, 1m, or seconds); 0 tries once (default: wait forever)")
	fs.BoolVar(&f.try, "try", false, "try once, do not wait (same as --timeout 0)")
	fs.BoolVar(&f.shared, "shared", false, "take a shared lock (file store and PostgreSQL only)")
	fs.BoolVar(&f.quiet, "q", false, "say nothing about the lock: no waiting line, no message when it is not acquired (exit code only)")
	fs.DurationVar(&f.keepalive, "keepalive", 5*time.Second, "check the lock every `D` while the command runs; 0 turns it off")
	fs.DurationVar(&f.grace, "grace", 10*time.Second, "after a lost lock, wait `D` between SIGTERM and SIGKILL")
	fs.IntVar(&f.conflictCode, "conflict-exit-code", exitNotAcquired, "exit `CODE` when the lock is not acquired")
	cmdline, code, ok := a.parse(fs, args, false)
	if !ok {
		return code
	}
	res := runResult{Key: f.key}
	if f.prefix != "" {
		res.Key = f.prefix + "/" + f.key
	}
	if bad := f.check(fs, cmdline); bad != "" {
		if f.json {
			res.Result, res.ExitCode, res.Error = "error", exitError, "kannuki run: "+bad
			a.writeResult(&res)
			return exitError
		}
		fmt.Fprintf(a.stderr, "kannuki run: %s\nRun \"kannuki run --help\" for usage.\n", bad)
		return exitError
	}
	code = a.runLocked(ctx, &f, cmdline, &res)
	res.ExitCode = code
	if f.json {
		a.writeResult(&res)
	}
	return code
}

// check returns what is wrong with the flags and command line, or "".
func (f *runFlags) check(fs *flag.FlagSet, cmdline []string) string {
	switch {
	case f.key == "" && len(cmdline) > 0 && flagAfterCommand(fs, cmdline) != "":
		// "kannuki run ls --key x": parsing stopped at "ls", so --key went
		// to the command; "--key is required" would be baffling.
		return fmt.Sprintf("%s comes after the command %q: flags must come before the command (kannuki run [flags] --key KEY -- COMMAND [ARGS...])", flagAfterCommand(fs, cmdline), cmdline[0])
	case f.key == "":
		return "--key is required"
	case len(cmdline) == 0:
		return "no command given (kannuki run --key KEY -- COMMAND [ARGS...])"
	case f.try && f.wait.set && f.wait.d != 0:
		return "--try and --timeout " + f.wait.d.String() + " contradict each other"
	case f.keepalive < 0:
		return "--keepalive must not be negative (0 turns it off)"
	case f.grace < 0:
		return "--grace must not be negative"
	case f.conflictCode < 0 || f.conflictCode > 255:
		return "--conflict-exit-code must be 0-255"
	}
	return ""
}

// flagAfterCommand returns the first argument after the command that is
// one of run's own flags ("--key", "-key=x", ...), or "".
func flagAfterCommand(fs *flag.FlagSet, cmdline []string) string {
	for _, arg := range cmdline[1:] {
		if arg == "--" || !strings.HasPrefix(arg, "-") {
			continue
		}
		spelled, _, _ := strings.Cut(arg, "=")
		if name := strings.TrimLeft(spelled, "-"); name != "" && fs.Lookup(name) != nil {
			return spelled
		}
	}
	return ""
}

// writeResult prints the --json result line on stderr.
func (a *app) writeResult(res *runResult) {
	b, _ := json.Marshal(res)
	fmt.Fprintf(a.stderr, "%s\n", b)
}

// say prints a diagnostic unless --json asked for the result line only.
func (a *app) say(f *runFlags, format string, args ...any) {
	if !f.json {
		fmt.Fprintf(a.stderr, format+"\n", args...)
	}
}

func (a *app) logger(c *common) *slog.Logger {
	if !c.verbose {
		return nil
	}
	o := &slog.HandlerOptions{Level: slog.LevelDebug}
	if c.json {
		return slog.New(slog.NewJSONHandler(a.stderr, o))
	}
	return slog.New(slog.NewTextHandler(a.stderr, o))
}

// runLocked takes the lock, runs the command and releases the lock; it
// returns the exit code and fills res.
func (a *app) runLocked(ctx context.Context, f *runFlags, cmdline []string, res *runResult) int {
	sigs := make(chan os.Signal, 16)
	signal.Notify(sigs, forwarded...)
	defer signal.Stop(sigs)

	// Until the command runs, a signal abandons connecting and waiting.
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		interrupted os.Signal
		wg          sync.WaitGroup
	)
	waiting := make(chan struct{})
	wg.Add(1)
	go func() {
		defer wg.Done()
		select {
		case s := <-sigs:
			interrupted = s
			cancel()
		case <-waiting:
		}
	}()
	endWait := func() { close(waiting); wg.Wait() }

	fail := func(code int, result string, err error) int {
		res.Result = result
		if err != nil {
			res.Error = a.red.String(message(err))
			a.say(f, "%s", message(err))
		}
		return code
	}
	interruptedCode := func() int {
		res.Result = "interrupted"
		a.say(f, "kannuki: %s while waiting for lock %q", interrupted, res.Key)
		return exitSignalBase + int(interrupted.(syscall.Signal))
	}

	st, err := a.open(wctx, a.dsnOrEnv(&f.common))
	if err != nil {
		endWait()
		if interrupted != nil {
			return interruptedCode()
		}
		return fail(exitError, "error", err)
	}
	defer st.close()

	keepalive := f.keepalive
	if keepalive == 0 {
		keepalive = -1 // the Locker's "off"
	}
	try := f.try || (f.wait.set && f.wait.d == 0)
	start := time.Now()
	var display *waitDisplay
	if !try && !f.quiet && !f.json {
		width := a.terminal
		if f.verbose {
			width = nil // log lines would break into an in-place line
		}
		display = newWaitDisplay(a.stderr, width, res.Key, start)
	}
	o := kannuki.Options{KeyPrefix: f.prefix, KeepaliveInterval: keepalive, Logger: a.logger(&f.common)}
	if display != nil {
		o.Hook = display.hook()
	}
	l := kannuki.New(st.backend, o)
	if display != nil {
		display.launch(wctx, holderOf(l, st, f.key))
	}
	var opts []kannuki.CallOption
	if f.shared {
		opts = append(opts, kannuki.Shared())
	}
	var h *kannuki.Handle
	switch {
	case try:
		h, err = l.Acquire(wctx, f.key, append(opts, kannuki.Timeout(0))...)
	case f.wait.set:
		h, err = l.Acquire(wctx, f.key, append(opts, kannuki.Timeout(f.wait.d))...)
	default:
		h, err = l.Acquire(wctx, f.key, append(opts, kannuki.NoTimeout())...)
	}
	display.stop() // erases the line before anything else is said
	endWait()
	res.WaitedSeconds = seconds(time.Since(start))
	if interrupted != nil {
		if h != nil {
			_ = h.Release(context.Background())
		}
		return interruptedCode()
	}
	if err != nil {
		var na *kannuki.NotAcquiredError
		if errors.As(err, &na) && na.Reason != kannuki.ReasonError {
			res.Reason = na.Reason.String()
			if f.quiet {
				res.Result, res.Error = "not_acquired", a.red.String(message(err))
				return f.conflictCode
			}
			return fail(f.conflictCode, "not_acquired", err)
		}
		return fail(exitError, "error", err)
	}

	held := time.Now()
	code, lost := a.supervise(f, h, cmdline, sigs, res)
	rerr := h.Release(context.Background())
	res.HeldSeconds = seconds(time.Since(held))
	if lost {
		// Reported when found (supervise); another process may have held
		// the lock while the command was still running.
		res.Result, res.Error = "lock_lost", a.red.String(message(h.Err()))
		return exitLockLost
	}
	if errors.Is(rerr, kannuki.ErrLockLost) {
		return fail(exitLockLost, "lock_lost", fmt.Errorf("%w (found on release, after the command ended; another process may have held the lock meanwhile)", rerr))
	}
	if rerr != nil {
		// The command ran under the lock and the store has dropped the lock
		// (the backend discards a connection it cannot unlock on): report,
		// but let the command's own status stand.
		res.Error = a.red.String(message(rerr))
		a.say(f, "kannuki: warning: %s", strings.TrimPrefix(message(rerr), "kannuki: "))
	}
	return code
}

// supervise starts the command and waits for it, forwarding signals and
// stopping it when the lock is lost. It returns the exit code to use and
// whether the lock was lost.
func (a *app) supervise(f *runFlags, h *kannuki.Handle, cmdline []string, sigs <-chan os.Signal, res *runResult) (int, bool) {
	cmd := exec.Command(cmdline[0], cmdline[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.Env = append(os.Environ(), "KANNUKI_KEY="+res.Key)
	unlock := prepareChild(cmd)
	defer unlock()
	if err := cmd.Start(); err != nil {
		res.Result = "error"
		err = startError(cmdline[0], err)
		res.Error = a.red.String(message(err))
		a.say(f, "%s", message(err))
		if errors.Is(err, exec.ErrNotFound) || errors.Is(err, fs.ErrNotExist) {
			return exitNotFound, false
		}
		return exitCannotExec, false
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait() // the status is read from cmd.ProcessState
		close(exited)
	}()
	lostCh := h.Lost()
	var (
		lost bool
		kill <-chan time.Time
	)
	for done := false; !done; {
		select {
		case s := <-sigs:
			_ = cmd.Process.Signal(s)
		case <-lostCh:
			lostCh, lost = nil, true
			a.say(f, "%s; sending SIGTERM to the command (SIGKILL after %s)", message(h.Err()), f.grace)
			_ = cmd.Process.Signal(syscall.SIGTERM)
			t := time.NewTimer(f.grace)
			defer t.Stop()
			kill = t.C
		case <-kill:
			kill = nil
			_ = cmd.Process.Kill()
		case <-exited:
			done = true
		}
	}
	res.Result = "ran"
	ws, _ := cmd.ProcessState.Sys().(syscall.WaitStatus)
	code := cmd.ProcessState.ExitCode()
	if ws.Signaled() {
		code = exitSignalBase + int(ws.Signal())
		sig := int(ws.Signal())
		res.CommandSignal = &sig
	}
	res.CommandExit = &code
	return code, lost
}

// startError restates a failure to start the command without the Go
// wording ("exec: ...", "fork/exec ..."): the command and the cause.
func startError(name string, err error) error {
	var ee *exec.Error
	var pe *fs.PathError
	switch {
	case errors.As(err, &ee):
		return fmt.Errorf("kannuki: command %q: %w", ee.Name, ee.Err)
	case errors.As(err, &pe):
		return fmt.Errorf("kannuki: command %q: %w", name, pe.Err)
	}
	return err
}
