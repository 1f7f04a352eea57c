// Package exampletest runs an example program in several OS processes
// against a real backend, for the examples' tests: it builds the program,
// starts the processes together, waits for them with a hang guard, parses
// their summaries and gives the test a connection to verify the data.
package exampletest

import (
	"bytes"
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"fmt"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kannuki-go/kannuki/store"

	"github.com/kannuki-go/kannuki"
	"github.com/kannuki-go/kannuki/examples/internal/exampleenv"
	"github.com/kannuki-go/kannuki/internal/testdb"
	"github.com/kannuki-go/kannuki/kannukifile"
	"github.com/kannuki-go/kannuki/kannukimysql"
	"github.com/kannuki-go/kannuki/kannukipg"
)

// ProcTimeout bounds one run of the processes (a hang guard, not a timing
// assertion).
const ProcTimeout = 2 * time.Minute

// Target is a backend an example runs against.
type Target struct {
	Name     string // subtest name
	Backend  string // -backend
	DSN      string // -dsn: the data's database
	Postgres bool   // the data lives in PostgreSQL (else MariaDB)
	What     string // what is unavailable when DSN cannot be reached
}

// PG, MySQL and File are the standard targets; File keeps its data in
// PostgreSQL.
func PG() Target {
	return Target{Name: "pg", Backend: exampleenv.Postgres, DSN: testdb.PostgresDSN(), Postgres: true, What: "PostgreSQL"}
}

// MySQL is MariaDB with GET_LOCK.
func MySQL() Target {
	return Target{Name: "mysql", Backend: exampleenv.MySQL, DSN: testdb.MySQLDSN(), What: "MariaDB"}
}

// File is file locks with the data in PostgreSQL.
func File() Target {
	return Target{Name: "file", Backend: exampleenv.File, DSN: testdb.PostgresDSN(), Postgres: true, What: "PostgreSQL"}
}

// PgBouncer is PostgreSQL through PgBouncer in transaction pooling mode
// (testdb.PgBouncerDSN, started by .ci/pgbouncer.sh). pgx's default
// statement cache uses named prepared statements, which a transaction
// pooler cannot route, so the DSN asks for the simple protocol unless it
// names an exec mode itself.
func PgBouncer() Target {
	dsn := testdb.PgBouncerDSN()
	if !strings.Contains(dsn, "default_query_exec_mode") {
		sep := "?"
		if strings.Contains(dsn, "?") {
			sep = "&"
		}
		dsn += sep + "default_query_exec_mode=simple_protocol"
	}
	return Target{Name: "pgbouncer", Backend: exampleenv.Postgres, DSN: dsn, Postgres: true, What: "PgBouncer"}
}

// None is the example without locks (-backend none), data in PostgreSQL:
// the negative control showing that a test's check catches what the lock
// prevents.
func None() Target {
	return Target{Name: "none", Backend: exampleenv.None, DSN: testdb.PostgresDSN(), Postgres: true, What: "PostgreSQL"}
}

// All is PG, MySQL and File.
func All() []Target { return []Target{PG(), MySQL(), File()} }

// Build compiles the example in the test's directory and returns the
// binary's path. Under -race the program is built with -race too.
func Build(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "example")
	args := []string{"build", "-o", bin}
	if Race {
		args = append(args, "-race")
	}
	// The build inherits the test's environment (GOWORK, GOFLAGS), so it
	// uses the same modules as the test.
	cmd := exec.Command("go", append(args, ".")...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// Env is one test's run against a target.
type Env struct {
	Target
	Run     string         // the run id given to every process
	LockDir string         // the file backend's lock directory
	DB      *sql.DB        // the data's database, for verification
	Data    exampleenv.SQL // DB with ? placeholders
	t       *testing.T
}

// Open connects to tg's database (skipping or failing the test when it is
// unreachable, see testdb.Unavailable) and picks a fresh run id. Rows of
// the run in tables are deleted when the test ends.
func Open(t *testing.T, tg Target, tables ...string) *Env {
	t.Helper()
	driver := "mysql"
	if tg.Postgres {
		driver = "pgx"
	}
	db, err := sql.Open(driver, tg.DSN)
	if err == nil {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err = db.PingContext(ctx)
		cancel()
	}
	if err != nil {
		if db != nil {
			db.Close()
		}
		testdb.Unavailable(t, tg.What, err)
	}
	e := &Env{Target: tg, Run: RunID(t), DB: db, Data: exampleenv.NewSQL(db, tg.Postgres), t: t}
	if tg.Backend == exampleenv.File {
		e.LockDir = t.TempDir()
	}
	t.Cleanup(func() {
		defer db.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		for _, table := range tables {
			if _, err := e.Data.Exec(ctx, "DELETE FROM "+table+" WHERE run = ?", e.Run); err != nil {
				t.Logf("clean up %s: %v", table, err)
			}
		}
	})
	return e
}

// RunID returns a fresh run id, unique across concurrent test runs.
func RunID(t *testing.T) string {
	var b [5]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	return "t" + hex.EncodeToString(b[:])
}

// Locker returns a Locker on the same locks as the example's processes
// (same backend, same key prefix), for tests that hold a lock themselves.
func (e *Env) Locker(t *testing.T) *kannuki.Locker {
	t.Helper()
	var b store.Backend
	switch e.Backend {
	case exampleenv.Postgres:
		b = kannukipg.New(e.DB, kannukipg.Options{})
	case exampleenv.MySQL:
		b = kannukimysql.New(e.DB, kannukimysql.Options{})
	default:
		fb, err := kannukifile.New(e.LockDir, kannukifile.Options{})
		if err != nil {
			t.Fatal(err)
		}
		b = fb
	}
	return kannuki.New(b, kannuki.Options{KeyPrefix: exampleenv.KeyPrefix(e.Run)})
}

// Proc is one finished process.
type Proc struct {
	Pid     int
	Summary map[string]string // the key=value pairs of its summary line
	Output  string            // stdout and stderr
}

// Int returns a summary value as an integer, failing the test if absent.
func (p Proc) Int(t *testing.T, key string) int64 {
	t.Helper()
	n, err := strconv.ParseInt(p.Summary[key], 10, 64)
	if err != nil {
		t.Fatalf("pid %d: summary %q: %v\n%s", p.Pid, key, err, p.Output)
	}
	return n
}

// Sum adds a summary value over processes.
func Sum(t *testing.T, procs []Proc, key string) int64 {
	t.Helper()
	var n int64
	for _, p := range procs {
		n += p.Int(t, key)
	}
	return n
}

// Start runs n processes of bin with the target's flags, the run id, a
// common start time and args, waits for all and fails the test if any
// fails. It returns them in start order.
func (e *Env) Start(bin string, n int, args ...string) []Proc {
	t := e.t
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), ProcTimeout)
	defer cancel()
	common := []string{"-backend", e.Backend, "-dsn", e.DSN, "-run", e.Run}
	if n > 1 {
		// Let every process connect and set up before the work starts.
		common = append(common, "-start", strconv.FormatInt(time.Now().Add(1500*time.Millisecond).UnixMilli(), 10))
	}
	if e.LockDir != "" {
		common = append(common, "-lockdir", e.LockDir)
	}
	args = append(common, args...)

	procs := make([]Proc, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		var out bytes.Buffer
		cmd := exec.CommandContext(ctx, bin, args...)
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			t.Fatalf("start %s: %v", bin, err)
		}
		procs[i].Pid = cmd.Process.Pid
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = cmd.Wait()
			procs[i].Output = out.String()
			procs[i].Summary = parseSummary(procs[i].Output)
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("process %d (%s %s): %v\n%s", procs[i].Pid, filepath.Base(bin), strings.Join(args, " "), err, procs[i].Output)
		}
		t.Logf("%s", strings.TrimSpace(procs[i].Output))
	}
	return procs
}

// parseSummary reads the key=value pairs of the last line with any.
func parseSummary(out string) map[string]string {
	m := map[string]string{}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	for i := len(lines) - 1; i >= 0 && len(m) == 0; i-- {
		for _, f := range strings.Fields(lines[i]) {
			if k, v, ok := strings.Cut(f, "="); ok {
				m[k] = v
			}
		}
	}
	return m
}

// Pids returns the processes' pids.
func Pids(procs []Proc) []int {
	pids := make([]int, len(procs))
	for i, p := range procs {
		pids[i] = p.Pid
	}
	return pids
}

// Fatalf is t.Fatalf with the run id, for invariant violations.
func (e *Env) Fatalf(format string, args ...any) {
	e.t.Helper()
	e.t.Fatalf("run %s on %s: %s", e.Run, e.Name, fmt.Sprintf(format, args...))
}
