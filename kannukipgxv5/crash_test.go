package kannukipgxv5

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kannuki-go/kannuki/keys"
	"github.com/kannuki-go/kannuki/store"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/kannuki-go/kannuki/internal/testdb"
)

// crashChildEnv holds the key a re-executed test binary takes and keeps
// until it is killed.
const crashChildEnv = "KANNUKIPGXV5_CRASH_CHILD"

// crashChild runs in the child process: take the key, print the session's
// pid, then sleep until killed (at most a minute).
func crashChild(key string) {
	fail := func(err error) {
		fmt.Fprintln(os.Stderr, "crash child:", err)
		os.Exit(2)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	pool, err := pgxpool.New(ctx, testdb.PostgresDSN())
	if err != nil {
		fail(err)
	}
	k, err := keys.Ruby{}.Derive("", key)
	if err != nil {
		fail(err)
	}
	l, err := New(pool, Options{}).Acquire(ctx, k, excl(store.WaitForever))
	if err != nil {
		fail(err)
	}
	fmt.Printf("held %d\n", pidOf(l))
	<-ctx.Done()
	os.Exit(1)
}

// TestCrash: a holder process killed with SIGKILL frees the lock (the
// server ends its session), and a waiter here then gets it.
func TestCrash(t *testing.T) {
	pool := newPool(t, 2)
	b := New(pool, Options{})
	obs := newObserver(t)
	k := newKey(t, "k")

	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), crashChildEnv+"="+k.String)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	defer func() {
		_ = cmd.Process.Kill()
		<-exited
	}()
	lines := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
		_ = cmd.Wait()
		close(exited)
	}()
	var line string
	select {
	case line = <-lines:
	case <-time.After(hangGuard):
		t.Fatal("the child did not take the lock")
	}
	pid, err := strconv.ParseUint(strings.TrimPrefix(line, "held "), 10, 32)
	if err != nil {
		t.Fatalf("child said %q", line)
	}
	if h := obs.holders(k); !slices.Equal(h, []uint32{uint32(pid)}) {
		t.Fatalf("holders %v, want the child's session %d", h, pid)
	}

	got := make(chan store.Lease, 1)
	go func() {
		ctx, cancel := guardCtx()
		defer cancel()
		l, err := b.Acquire(ctx, k, excl(store.WaitForever))
		if err != nil {
			t.Errorf("waiter: %v", err)
		}
		got <- l
	}()
	obs.waitWaiters(k, 1)
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	l := <-got
	if l == nil {
		return
	}
	if h := obs.holders(k); !slices.Equal(h, []uint32{pidOf(l)}) {
		t.Fatalf("holders %v after the crash, want the waiter", h)
	}
	mustRelease(t, l)
}
