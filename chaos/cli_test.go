package chaos

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/kannuki-go/kannuki/internal/testdb"
)

var (
	cliOnce sync.Once
	cliPath string
	cliErr  error
	cliDir  string
)

// cliBinary builds cmd/kannuki once per test process into a temporary
// directory (removed by TestMain's caller only through the OS: it is
// small) and returns its path.
func cliBinary(t testing.TB) string {
	t.Helper()
	cliOnce.Do(func() {
		cliDir, cliErr = os.MkdirTemp("", "kannuki-chaos-cli-")
		if cliErr != nil {
			return
		}
		cliPath = filepath.Join(cliDir, "kannuki")
		src, err := filepath.Abs(filepath.Join("..", "cmd", "kannuki"))
		if err != nil {
			cliErr = err
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, "go", "build", "-o", cliPath, ".")
		cmd.Dir = src
		out, err := cmd.CombinedOutput()
		if err != nil {
			cliErr = fmt.Errorf("go build cmd/kannuki: %v\n%s", err, out)
		}
	})
	if cliErr != nil {
		t.Fatal(cliErr)
	}
	return cliPath
}

// removeCLI deletes the built binary; TestMain calls it after the run.
func removeCLI() {
	if cliDir != "" {
		os.RemoveAll(cliDir)
	}
}

// cliResult is one run of the binary.
type cliResult struct {
	code   int
	stdout string
	stderr string
}

// runCLI runs the binary with args and env additions, bounded by hangGuard
// plus the CLI's own connect timeout.
func runCLI(t testing.TB, env []string, args ...string) cliResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second+hangGuard)
	defer cancel()
	cmd := exec.CommandContext(ctx, cliBinary(t), args...)
	cmd.Env = append(append(os.Environ(), "KANNUKI_DSN="), env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	r := cliResult{stdout: out.String(), stderr: errb.String()}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		r.code = ee.ExitCode()
	default:
		t.Fatalf("kannuki %q: %v", args, err)
	}
	if ctx.Err() != nil {
		t.Fatalf("kannuki %q hung", args)
	}
	if s := r.stdout + r.stderr; strings.Contains(s, "panic:") || strings.Contains(s, "goroutine ") {
		t.Fatalf("kannuki %q crashed:\n%s", args, s)
	}
	return r
}

// cliDSNs are the stores the CLI is tried on: a file directory in a
// sandbox, the test PostgreSQL and the test MariaDB.
func cliDSNs(t *testing.T, sandbox string) map[string]string {
	t.Helper()
	dir := filepath.Join(sandbox, "locks")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	out := map[string]string{kindFile: "file://" + dir, "postgres": pgDSN("", "kannuki-chaos-cli", "")}
	if mc, err := mysql.ParseDSN(testdb.MySQLDSN()); err == nil && mc.Net == "tcp" {
		u := url.URL{Scheme: "mysql", Host: mc.Addr, Path: "/" + mc.DBName}
		if mc.Passwd != "" {
			u.User = url.UserPassword(mc.User, mc.Passwd)
		} else {
			u.User = url.User(mc.User)
		}
		out[kindMySQL] = u.String()
	}
	return out
}

// TestCLIBadInput: every key of the corpus through "kannuki run" and
// "kannuki status" on each store: accepted keys work, rejected ones exit
// 125 with a kannuki: message, nothing crashes or hangs, and the file
// store writes nowhere but its directory.
func TestCLIBadInput(t *testing.T) {
	sandbox := t.TempDir()
	dsns := cliDSNs(t, sandbox)
	// Probe the databases once: skip (or fail in CI) without them.
	pgAdmin(t)
	mysqlAdmin(t)
	var mu sync.Mutex
	codes := map[string]int64{}
	for store, dsn := range dsns {
		t.Run(store, func(t *testing.T) {
			t.Parallel()
			for name, key := range acceptedKeys() {
				key := cutRunes(key, 4000) + "-" + randHex(4)
				r := runCLI(t, nil, "run", "--dsn", dsn, "--try", "--key", key, "--", "true")
				if r.code != 0 {
					t.Errorf("run --key %s: exit %d\n%s", name, r.code, r.stderr)
				}
				r = runCLI(t, nil, "run", "--dsn", dsn, "--try", "--prefix", cutRunes(key, 3000), "--key", "k", "--", "true")
				if r.code != 0 {
					t.Errorf("run --prefix %s: exit %d\n%s", name, r.code, r.stderr)
				}
				r = runCLI(t, nil, "status", "--dsn", dsn, "--", key)
				if r.code != 0 {
					t.Errorf("status %s: exit %d (want 0: free)\n%s", name, r.code, r.stderr)
				}
				mu.Lock()
				codes["accepted"] += 3
				mu.Unlock()
			}
			for name, key := range rejectedKeys() {
				if strings.IndexByte(key, 0) >= 0 {
					continue // no argv can carry a NUL byte
				}
				if len(key) > 100<<10 {
					key = key[:100<<10] // an argument is at most 128 KiB on Linux
				}
				r := runCLI(t, nil, "run", "--dsn", dsn, "--try", "--key", key, "--", "true")
				if r.code != 125 || !strings.HasPrefix(r.stderr, "kannuki") {
					t.Errorf("run --key %s: exit %d, stderr %.200q; want 125 and a kannuki message", name, r.code, r.stderr)
				}
				if len(r.stderr) > 4096 {
					t.Errorf("run --key %s: %d bytes of error output: the key is echoed whole", name, len(r.stderr))
				}
				r = runCLI(t, nil, "status", "--dsn", dsn, "--", key)
				if r.code != 125 {
					t.Errorf("status %s: exit %d; want 125", name, r.code)
				}
				mu.Lock()
				codes["rejected"] += 2
				mu.Unlock()
			}
		})
	}
	t.Cleanup(func() {
		checkSandbox(t, sandbox, filepath.Join(sandbox, "locks"))
		record(t, Figure{Backend: "kannuki CLI", Counts: map[string]int64{"runs_accepted_keys": codes["accepted"], "runs_rejected_keys": codes["rejected"]},
			Notes: []string{"keys with a NUL byte cannot be passed in argv; the 1 MiB key is cut to 100 KiB (Linux limits one argument to 128 KiB)"}})
	})
}
