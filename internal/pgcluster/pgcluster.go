// Package pgcluster starts a throwaway PostgreSQL cluster for a test that
// needs server settings of its own (a small lock table, few connections)
// which it cannot set on the shared server without disturbing the tests
// running beside it. It uses the server binaries of the installed
// PostgreSQL (Debian's /usr/lib/postgresql/N/bin); as root it runs them as
// the postgres user, since initdb refuses to run as root.
package pgcluster

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kannuki-go/kannuki/internal/testdb"
)

// Cluster is a running throwaway cluster.
type Cluster struct {
	Dir  string // data directory (and the Unix socket's directory)
	Port int
	DSN  string // postgres://postgres@127.0.0.1:Port/postgres?sslmode=disable
	cmd  *exec.Cmd
	// exited is closed once the server process has ended (and was reaped).
	exited chan struct{}
}

// binDir finds the newest installed server's bin directory.
func binDir() (string, error) {
	if d := os.Getenv("KANNUKI_PG_BIN"); d != "" {
		return d, nil
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool { return version(dirs[i]) < version(dirs[j]) })
	for i := len(dirs) - 1; i >= 0; i-- {
		if _, err := os.Stat(filepath.Join(dirs[i], "initdb")); err == nil {
			return dirs[i], nil
		}
	}
	return "", errors.New("no PostgreSQL server binaries (initdb) found under /usr/lib/postgresql (set KANNUKI_PG_BIN)")
}

func version(dir string) int {
	n, _ := strconv.Atoi(filepath.Base(filepath.Dir(dir)))
	return n
}

// Start initializes and starts a cluster with settings (name=value pairs
// given to the server as -c options), and stops it and removes its files
// when t ends. A machine without the server binaries skips the test, or
// fails it under KANNUKI_TEST_REQUIRE_DB=1.
func Start(t testing.TB, settings ...string) *Cluster {
	t.Helper()
	c, err := start(settings)
	if err != nil {
		testdb.Unavailable(t, "throwaway PostgreSQL cluster", err)
	}
	t.Cleanup(c.stop)
	return c
}

func start(settings []string) (*Cluster, error) {
	bin, err := binDir()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "kannuki-pgcluster-")
	if err != nil {
		return nil, err
	}
	asUser, err := runAs(dir)
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	data := filepath.Join(dir, "data")
	initdb := exec.Command(filepath.Join(bin, "initdb"), "-D", data, "-U", "postgres", "--auth=trust", "-N", "-E", "UTF8", "--locale=C")
	initdb.SysProcAttr = asUser
	if out, err := initdb.CombinedOutput(); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("initdb: %v: %s", err, out)
	}
	port, err := freePort()
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	args := []string{"-D", data, "-p", strconv.Itoa(port), "-c", "listen_addresses=127.0.0.1",
		"-c", "unix_socket_directories=" + dir, "-c", "fsync=off", "-c", "synchronous_commit=off",
		"-c", "full_page_writes=off", "-c", "shared_buffers=16MB", "-c", "logging_collector=off"}
	for _, s := range settings {
		args = append(args, "-c", s)
	}
	cmd := exec.Command(filepath.Join(bin, "postgres"), args...)
	cmd.SysProcAttr = asUser
	logf, err := os.Create(filepath.Join(dir, "server.log"))
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		os.RemoveAll(dir)
		return nil, err
	}
	logf.Close()
	c := &Cluster{Dir: dir, Port: port, cmd: cmd, exited: make(chan struct{}),
		DSN: fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", port)}
	if err := c.waitReady(bin, 60*time.Second); err != nil {
		log, _ := os.ReadFile(filepath.Join(dir, "server.log"))
		c.stop()
		return nil, fmt.Errorf("%v; server log:\n%s", err, log)
	}
	return c, nil
}

// waitReady waits until the server accepts connections (pg_isready says
// so), or the server exits, or d runs out.
func (c *Cluster) waitReady(bin string, d time.Duration) error {
	go func() { _ = c.cmd.Wait(); close(c.exited) }()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	for {
		ready := exec.CommandContext(ctx, filepath.Join(bin, "pg_isready"), "-q", "-h", "127.0.0.1", "-p", strconv.Itoa(c.Port), "-U", "postgres")
		if ready.Run() == nil {
			return nil
		}
		select {
		case <-c.exited:
			return errors.New("the server exited before it accepted connections")
		case <-ctx.Done():
			return errors.New("the server did not accept connections in time")
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// stop shuts the server down (fast mode: SIGINT) and removes its files.
func (c *Cluster) stop() {
	if c.cmd != nil && c.cmd.Process != nil {
		_ = c.cmd.Process.Signal(syscall.SIGINT)
		select {
		case <-c.exited:
		case <-time.After(30 * time.Second):
			_ = c.cmd.Process.Kill()
			<-c.exited
		}
	}
	os.RemoveAll(c.Dir)
}

// runAs returns the credentials to run the server with: none for an
// ordinary user, the postgres user's for root (dir is handed to it).
func runAs(dir string) (*syscall.SysProcAttr, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, fmt.Errorf("running as root and no postgres user to run the server as: %w", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	if err := os.Chown(dir, uid, gid); err != nil {
		return nil, err
	}
	return &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}}, nil
}

// freePort asks the kernel for a free loopback port.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	_, p, _ := strings.Cut(ln.Addr().String(), ":")
	return strconv.Atoi(p)
}
