package pgsql

import (
	"bufio"
	"context"
	"database/sql"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kannuki-go/kannuki/keys"
	"github.com/kannuki-go/kannuki/store"

	"github.com/kannuki-go/kannuki/internal/testdb"
	"github.com/kannuki-go/kannuki/kannukipg"
)

// childEnv makes the test binary act as a lock-holding child process:
// "driver-sql-name|key". See childMain.
const childEnv = "KANNUKI_PGSQL_IT_CHILD"

// childMain takes the lock named in childEnv, says "HELD" on stdout and
// waits to be killed.
func childMain() int {
	drv, key, ok := strings.Cut(os.Getenv(childEnv), "|")
	if !ok {
		fmt.Fprintln(os.Stderr, "bad", childEnv)
		return 2
	}
	db, err := sql.Open(drv, testdb.PostgresDSN())
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	k, err := keys.Ruby{}.Derive("", key)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := kannukipg.New(db, kannukipg.Options{}).Acquire(ctx, k, store.Request{Wait: store.WaitForever}); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Println("HELD")
	<-ctx.Done() // the parent kills us long before
	return 3
}

// TestCrashFreesLock: a holder process killed with SIGKILL frees the lock
// (the server ends its session) and a waiter in this process then gets it.
func TestCrashFreesLock(t *testing.T) {
	forEachDriver(t, func(t *testing.T, d driver) {
		b, _ := newBackend(t, d, 4)
		obs := newObserver(t)
		k := uniqueKey(t)

		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), childEnv+"="+d.sql+"|"+k.String)
		cmd.Stderr = os.Stderr
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		exited := make(chan error, 1)
		defer func() {
			_ = cmd.Process.Kill()
			<-exited
		}()
		line := make(chan string, 1)
		go func() {
			s, _ := bufio.NewReader(out).ReadString('\n')
			line <- s
			exited <- cmd.Wait()
		}()
		select {
		case s := <-line:
			if strings.TrimSpace(s) != "HELD" {
				t.Fatalf("child said %q", s)
			}
		case <-time.After(30 * time.Second):
			t.Fatal("child did not take the lock within 30s")
		}
		if n := obs.held(t, k); n != 1 {
			t.Fatalf("child holds the lock but pg_locks shows %d holders", n)
		}

		got := make(chan error, 1)
		var lease store.Lease
		go func() {
			var err error
			lease, err = b.Acquire(ctxT(t, 30*time.Second), k, store.Request{Wait: store.WaitForever})
			got <- err
		}()
		eventually(t, 10*time.Second, "the waiter to queue", func() bool { return obs.waiting(t, k) == 1 })
		if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		select {
		case err := <-got:
			if err != nil {
				t.Fatalf("waiter after the holder's crash: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Fatal("waiter not granted within 30s of the holder's SIGKILL")
		}
		pids := obs.holderPIDs(t, k)
		if len(pids) != 1 {
			t.Fatalf("holders after crash: %v", pids)
		}
		mustRelease(t, lease)
		if n := obs.held(t, k); n != 0 {
			t.Fatalf("%d holders after release", n)
		}
	})
}
