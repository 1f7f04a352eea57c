// Command kannuki runs a command while holding a lock, host-wide on the
// embedded file store or cluster-wide on a PostgreSQL or MySQL/MariaDB
// database, and shows who holds which lock.
//
//	kannuki run --key nightly-report --try -- ./report.sh
//	kannuki run --key nightly-report --try --dsn postgres://app@db/app -- ./report.sh
//	kannuki status nightly-report
//	kannuki locks --json
//
// Run "kannuki help" for the commands, "kannuki help exit-codes" for the
// exit codes scripts can branch on and "kannuki help dsn" for the DSN forms.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
)

// Exit codes. The child's own status passes through "kannuki run"; the
// codes kannuki adds follow sysexits(3) and the conventions of env(1),
// timeout(1) and the shells (125-127), so they do not collide with the
// 0/1/2 most commands use.
const (
	exitOK          = 0
	exitHeld        = 1   // status: the key is held
	exitLockLost    = 70  // run: the lock was lost while the command ran (EX_SOFTWARE)
	exitNotAcquired = 75  // run: the lock was not acquired (EX_TEMPFAIL); see --conflict-exit-code
	exitError       = 125 // kannuki itself failed: usage, DSN, database unreachable
	exitCannotExec  = 126 // run: the command was found but could not be started
	exitNotFound    = 127 // run: the command was not found
	exitSignalBase  = 128 // run: 128+N when the command (or the wait) ended by signal N
)

const envDSN = "KANNUKI_DSN"

const usageTop = `kannuki runs a command while holding a lock, and shows who holds which lock.

Usage:
  kannuki run [flags] --key KEY -- COMMAND [ARGS...]   run COMMAND holding the lock KEY
  kannuki status [flags] KEY                           is KEY held, and by whom
  kannuki locks [flags]                                list held and awaited locks
  kannuki version                                      print the version
  kannuki help [run | status | locks | dsn | exit-codes]

The lock store is chosen by --dsn or $KANNUKI_DSN: none means the embedded
file store (locks exclude processes on this host only); a postgres://,
postgresql://, mysql:// or mariadb:// URL means advisory locks in that
database (locks exclude every process using it, on any host).
Run "kannuki help dsn" for the forms and "kannuki help exit-codes" for the
exit codes.
`

const usageExitCodes = `Exit codes of "kannuki run":
  N      the command ran; N is its own exit status (0-255)
  128+N  the command was killed by signal N (as in the shells); also when
         kannuki got signal N while still waiting for the lock
  75     the lock was not acquired: held elsewhere on --try, or --timeout
         ran out (EX_TEMPFAIL; change it with --conflict-exit-code)
  70     the lock was lost while the command ran (database session killed,
         database restarted); the command got SIGTERM, then SIGKILL after
         --grace
  125    kannuki failed: bad usage, bad DSN, database unreachable
  126    the command was found but could not be started
  127    the command was not found

Exit codes of "kannuki status KEY": 0 free, 1 held, 125 error.
Exit codes of "kannuki locks" and "kannuki version": 0 ok, 125 error.
`

const usageDSN = `DSN forms (--dsn, or $KANNUKI_DSN, which keeps the password out of ps):
  (none)
      The embedded file store: one lock file per key in $TMPDIR/kannuki-UID
      (/tmp/kannuki-UID by default). Excludes processes of this host and user
      only; the kernel frees a lock when its holder dies. Services with a
      private /tmp or another TMPDIR need an explicit file:// directory.
  file:///var/lock/kannuki
      The file store in that directory, which must exist. Lock files are
      created readable by all, so other users' jobs can share the locks.
  postgres://USER:PASSWORD@HOST:5432/DB?sslmode=disable   (postgresql:// too)
      PostgreSQL session advisory locks; parameters as in libpq
      (sslmode, connect_timeout, application_name, ...). kannuki sets
      application_name=kannuki and connect_timeout=10 unless given.
  mysql://USER:PASSWORD@HOST:3306/DB?PARAMS                (mariadb:// too)
      MySQL/MariaDB GET_LOCK. HOST defaults to 127.0.0.1, the port to 3306;
      ?socket=/run/mysqld/mysqld.sock connects over a Unix socket. PARAMS are
      the MySQL driver's: tls, timeout, readTimeout, writeTimeout, ...;
      other names set session variables (sql_mode=ANSI).
      Not user:pass@tcp(host:port)/db: that is a Go program's DSN form.
Percent-encode special characters in USER and PASSWORD (@ as %40, / as %2F).
kannuki never prints a password: DSNs appear as USER:xxxxx@HOST.
`

// app is one invocation: its output streams (redacted) and environment.
type app struct {
	stdout, stderr io.Writer
	getenv         func(string) string
	red            *redactor
	// terminal reports whether stderr is a terminal, and its width, for
	// the in-place waiting line; nil means never.
	terminal func() (width int, ok bool)
}

func main() {
	red := &redactor{}
	a := &app{
		stdout: red.writer(os.Stdout),
		stderr: red.writer(os.Stderr),
		getenv: os.Getenv,
		red:    red,
	}
	a.terminal = func() (int, bool) { return terminal(os.Stderr, a.getenv) }
	os.Exit(a.main(context.Background(), os.Args[1:]))
}

// main dispatches to a command and returns the process exit code.
func (a *app) main(ctx context.Context, args []string) int {
	// The DSN in the environment is a secret whatever the command does.
	a.red.add(dsnSecrets(a.getenv(envDSN))...)
	if len(args) == 0 {
		fmt.Fprint(a.stderr, usageTop)
		return exitError
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "run":
		return a.run(ctx, rest)
	case "status":
		return a.status(ctx, rest)
	case "locks":
		return a.locks(ctx, rest)
	case "version", "--version", "-version":
		return a.version(rest)
	case "help", "-h", "-help", "--help":
		return a.help(rest)
	}
	fmt.Fprintf(a.stderr, "kannuki: unknown command %q\n\n%s", cmd, usageTop)
	return exitError
}

func (a *app) help(args []string) int {
	if len(args) == 0 {
		fmt.Fprint(a.stdout, usageTop)
		return exitOK
	}
	switch args[0] {
	case "dsn":
		fmt.Fprint(a.stdout, usageDSN)
		return exitOK
	case "exit-codes", "exit", "codes":
		fmt.Fprint(a.stdout, usageExitCodes)
		return exitOK
	case "run", "status", "locks", "version":
		return a.main(context.Background(), []string{args[0], "--help"})
	}
	fmt.Fprintf(a.stderr, "kannuki: no help on %q\n\n%s", args[0], usageTop)
	return exitError
}

// fail prints err (redacted by the writer) and returns exitError.
func (a *app) fail(err error) int {
	fmt.Fprintln(a.stderr, message(err))
	return exitError
}
