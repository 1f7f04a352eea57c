//go:build linux || darwin || dragonfly || freebsd || netbsd || openbsd

package kannukifile

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kannuki-go/kannuki/store"

	"github.com/kannuki-go/kannuki"
	"github.com/kannuki-go/kannuki/internal/testproc"
)

// capacityChildEnv names the lock directory of TestCapacity's child.
const capacityChildEnv = "KANNUKIFILE_CAPACITY_CHILD"

// capacityKey is the i-th key the child takes.
func capacityKey(i int) string { return "cap/" + strconv.Itoa(i) }

// TestCapacity (#14 item 4): a child process with a low RLIMIT_NOFILE
// takes locks until one is refused. The refusal matches ErrCapacity
// (Reason capacity) and names the open-file limit; every lock taken
// before it is still held, seen from this process, and none was reported
// lost; after the child releases them all are free.
func TestCapacity(t *testing.T) {
	if dir := os.Getenv(capacityChildEnv); dir != "" {
		capacityChild(t, dir)
		return
	}
	dir := t.TempDir()
	var stdin io.WriteCloser
	p, err := testproc.ReRun(t, t.Name(), []string{capacityChildEnv + "=" + dir}, time.Minute, func(c *exec.Cmd) error {
		var err error
		stdin, err = c.StdinPipe()
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	n := -1
	deadline := time.Now().Add(hangGuard)
	for n < 0 {
		out := p.Out.String()
		if _, rest, ok := strings.Cut(out, "HELD "); ok {
			if f := strings.Fields(rest); len(f) > 0 {
				n, _ = strconv.Atoi(f[0])
			}
		}
		if n < 0 && (p.Exited() || time.Now().After(deadline)) {
			t.Fatalf("child did not report its locks:\n%s", out)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if n < 5 {
		t.Fatalf("child held only %d locks:\n%s", n, p.Out.String())
	}
	b := newBackend(t, dir)
	ctx, cancel := context.WithTimeout(context.Background(), hangGuard)
	defer cancel()
	for i := range n {
		k := store.Key{String: capacityKey(i)}
		held, err := b.Held(ctx, k)
		if err != nil || !held {
			t.Fatalf("lock %d after the refusal: held %v, %v", i, held, err)
		}
	}
	if _, err := b.Acquire(ctx, store.Key{String: capacityKey(0)}, store.Request{}); !errors.Is(err, store.ErrNotAcquired) {
		t.Fatalf("try of the child's first lock: %v, want ErrNotAcquired", err)
	}
	stdin.Close()
	select {
	case <-p.Done():
	case <-time.After(hangGuard):
		t.Fatal("child did not end")
	}
	if err := p.Err(); err != nil || !strings.Contains(p.Out.String(), "RELEASED") {
		t.Fatalf("child: %v\n%s", err, p.Out.String())
	}
	t.Logf("child:\n%s", p.Out.String())
	for i := range n {
		if held, err := b.Held(ctx, store.Key{String: capacityKey(i)}); err != nil || held {
			t.Fatalf("lock %d after the child's release: held %v, %v", i, held, err)
		}
	}
}

// capacityChild is TestCapacity's child: it lowers its open-file limit
// to a few dozen above what it has open, fills it with locks, checks the
// refusal and the locks, reports "HELD n", holds them until its standard
// input closes, and releases them.
func capacityChild(t *testing.T, dir string) {
	b, err := New(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("cannot count open files: %v", err)
	}
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		t.Fatal(err)
	}
	rl.Cur = uint64(len(entries) + 32)
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		t.Fatal(err)
	}
	l := kannuki.New(b, kannuki.Options{})
	ctx := context.Background()
	var hs []*kannuki.Handle
	var refusal error
	for i := 0; i < 1000; i++ {
		h, err := l.Acquire(ctx, capacityKey(i), kannuki.Timeout(hangGuard))
		if err != nil {
			refusal = err
			break
		}
		hs = append(hs, h)
	}
	var na *kannuki.NotAcquiredError
	switch {
	case refusal == nil:
		t.Fatalf("1000 locks under an open-file limit of %d, no refusal", rl.Cur)
	case !errors.Is(refusal, store.ErrCapacity) || !errors.As(refusal, &na) || na.Reason != kannuki.ReasonCapacity:
		t.Fatalf("refusal: %v, want ErrCapacity with ReasonCapacity", refusal)
	case !strings.Contains(refusal.Error(), "RLIMIT_NOFILE, ulimit -n: "+strconv.FormatUint(rl.Cur, 10)) ||
		!errors.Is(refusal, syscall.EMFILE):
		t.Fatalf("refusal does not name the limit %d: %v", rl.Cur, refusal)
	}
	for i, h := range hs {
		if err := h.Err(); err != nil {
			t.Fatalf("lock %d lost: %v", i, err)
		}
	}
	if s := l.Stats(); s.Lost != 0 || s.NotCapacity != 1 || s.Held != int64(len(hs)) {
		t.Fatalf("stats: %+v", s)
	}
	fmt.Printf("limit %d: refused after %d locks: %v\n", rl.Cur, len(hs), refusal)
	fmt.Printf("HELD %d\n", len(hs))
	_, _ = io.Copy(io.Discard, os.Stdin)
	for i, h := range hs {
		if err := h.Release(ctx); err != nil {
			t.Fatalf("release %d: %v", i, err)
		}
	}
	fmt.Println("RELEASED")
}
