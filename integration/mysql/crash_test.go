package mysql

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

	"github.com/kannuki-go/kannuki/kannukimysql"
)

// childEnv, when set to "DSN\tKEY", makes the test binary a child that
// takes KEY on DSN, prints "held", and sleeps until killed.
const childEnv = "KANNUKI_MYSQL_TEST_CHILD"

func childMain() int {
	dsn, key, _ := strings.Cut(os.Getenv(childEnv), "\t")
	db, err := sql.Open("mysql", dsn)
	if err != nil {
		fmt.Println("error:", err)
		return 1
	}
	k, err := keys.Ruby{}.Derive("", key)
	if err != nil {
		fmt.Println("error:", err)
		return 1
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := kannukimysql.New(db, kannukimysql.Options{}).Acquire(ctx, k, exclusive(0)); err != nil {
		fmt.Println("error:", err)
		return 1
	}
	fmt.Println("held")
	time.Sleep(2 * time.Minute) // killed long before
	return 0
}

// TestCrash: a holder process killed with SIGKILL frees the lock, and a
// waiter in this process then gets it.
func TestCrash(t *testing.T) {
	forEachVariant(t, func(t *testing.T, v variant) {
		b, _ := newBackend(t, v, 4, kannukimysql.Options{})
		obs := newObserver(t)
		k := uniqueKey(t)

		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), childEnv+"="+v.dsn()+"\t"+k.String)
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
		line, err := bufio.NewReader(out).ReadString('\n')
		if err != nil || strings.TrimSpace(line) != "held" {
			t.Fatalf("child: %q %v", line, err)
		}
		holder := obs.owner(t, k)
		if holder == 0 {
			t.Fatal("the child reports the lock held, the server does not")
		}

		type result struct {
			l   store.Lease
			err error
		}
		got := make(chan result, 1)
		go func() {
			ctx, cancel := guard()
			defer cancel()
			l, err := b.Acquire(ctx, k, exclusive(store.WaitForever))
			got <- result{l, err}
		}()
		obs.waitWaiters(t, k, 1)
		select {
		case r := <-got:
			t.Fatalf("waiter returned while the child holds the lock: %v", r.err)
		default:
		}

		if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		r := <-got
		if r.err != nil {
			t.Fatalf("waiter after the holder's SIGKILL: %v", r.err)
		}
		if o := obs.owner(t, k); o == 0 || o == holder {
			t.Fatalf("after the handoff the lock's owner is %d (the dead holder was %d)", o, holder)
		}
		mustRelease(t, r.l)
		if o := obs.owner(t, k); o != 0 {
			t.Fatalf("still held by %d after Release", o)
		}
	})
}
