//go:build linux || darwin || dragonfly || freebsd || netbsd || openbsd

package kannukifile

import (
	"context"
	"errors"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/kannuki-go/kannuki/store"

	"github.com/kannuki-go/kannuki"
)

func newBackend(t testing.TB, dir string) *Backend {
	t.Helper()
	b, err := New(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

// pair returns two Backends on one fresh directory: two "clients" whose
// locks meet only in the kernel, as two processes' would.
func pair(t testing.TB) (*Backend, *Backend) {
	dir := t.TempDir()
	return newBackend(t, dir), newBackend(t, dir)
}

func excl(wait time.Duration) store.Request {
	return store.Request{Mode: store.ModeExclusive, Wait: wait}
}

func shared(wait time.Duration) store.Request {
	return store.Request{Mode: store.ModeShared, Wait: wait}
}

func mustAcquire(t testing.TB, b *Backend, k store.Key, req store.Request) store.Lease {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), hangGuard)
	defer cancel()
	l, err := b.Acquire(ctx, k, req)
	if err != nil {
		t.Fatalf("Acquire(%.40q, %+v): %v", k.String, req, err)
	}
	return l
}

func mustRelease(t testing.TB, l store.Lease) {
	t.Helper()
	if err := l.Release(context.Background()); err != nil {
		t.Fatalf("Release: %v", err)
	}
}

type result struct {
	l   store.Lease
	err error
}

func async(ctx context.Context, b *Backend, k store.Key, req store.Request) <-chan result {
	ch := make(chan result, 1)
	go func() {
		l, err := b.Acquire(ctx, k, req)
		ch <- result{l, err}
	}()
	return ch
}

func await(t testing.TB, ch <-chan result) result {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(hangGuard):
		t.Fatal("Acquire did not return")
		return result{}
	}
}

// pending fails if ch delivers within a short settle time; a slow machine
// can only make it miss a bug, never fail a correct backend.
func pending(t testing.TB, ch <-chan result, what string) {
	t.Helper()
	select {
	case r := <-ch:
		t.Fatalf("%s: Acquire returned (err %v) while it should wait", what, r.err)
	case <-time.After(100 * time.Millisecond):
	}
}

func held(t testing.TB, b *Backend, k store.Key) bool {
	t.Helper()
	h, err := b.Held(context.Background(), k)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func TestExclusionInProcess(t *testing.T) {
	b1, b2 := pair(t)
	k := store.Key{String: t.Name()}
	const goroutines, cycles = 8, 60
	var inside atomic.Int32
	counter := 0 // plain int: -race and the final count catch overlap
	var wg sync.WaitGroup
	for i := range 2 * goroutines {
		b := b1
		if i%2 == 1 {
			b = b2
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range cycles {
				l, err := b.Acquire(context.Background(), k, excl(store.WaitForever))
				if err != nil {
					t.Error(err)
					return
				}
				if n := inside.Add(1); n != 1 {
					t.Errorf("%d holders at once", n)
				}
				counter++
				inside.Add(-1)
				if err := l.Release(context.Background()); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	if counter != 2*goroutines*cycles {
		t.Fatalf("counter %d, want %d", counter, 2*goroutines*cycles)
	}
	if held(t, b1, k) {
		t.Fatal("held after every release")
	}
}

func TestTryAndHeld(t *testing.T) {
	b1, b2 := pair(t)
	ctx := context.Background()
	k := store.Key{String: t.Name()}
	if held(t, b2, k) {
		t.Fatal("Held before any lock")
	}
	l := mustAcquire(t, b1, k, excl(0))
	if !held(t, b2, k) || !held(t, b1, k) {
		t.Fatal("not Held while held")
	}
	for _, b := range []*Backend{b1, b2} {
		_, err := b.Acquire(ctx, k, excl(0))
		if !errors.Is(err, store.ErrNotAcquired) {
			t.Fatalf("try on a held key: %v, want ErrNotAcquired", err)
		}
		if _, err := b.Acquire(ctx, k, shared(0)); !errors.Is(err, store.ErrNotAcquired) {
			t.Fatalf("shared try on an exclusively held key: %v", err)
		}
	}
	mustRelease(t, l)
	if err := l.Release(ctx); !errors.Is(err, store.ErrReleased) {
		t.Fatalf("second Release: %v", err)
	}
	if held(t, b2, k) {
		t.Fatal("Held after release")
	}
	mustRelease(t, mustAcquire(t, b2, k, excl(0)))
}

func TestSharedSemantics(t *testing.T) {
	b1, b2 := pair(t)
	ctx := context.Background()
	k := store.Key{String: t.Name()}
	r1 := mustAcquire(t, b1, k, shared(0))
	r2 := mustAcquire(t, b2, k, shared(0))
	r3 := mustAcquire(t, b2, k, shared(0))
	if !held(t, b1, k) {
		t.Fatal("shared lock not Held")
	}
	if _, err := b1.Acquire(ctx, k, excl(0)); !errors.Is(err, store.ErrNotAcquired) {
		t.Fatalf("exclusive try while shared held: %v", err)
	}
	w := async(ctx, b1, k, excl(store.WaitForever))
	pending(t, w, "writer while readers hold")
	mustRelease(t, r1)
	mustRelease(t, r2)
	pending(t, w, "writer while one reader holds")
	mustRelease(t, r3)
	wl := await(t, w)
	if wl.err != nil {
		t.Fatal(wl.err)
	}
	if _, err := b2.Acquire(ctx, k, shared(0)); !errors.Is(err, store.ErrNotAcquired) {
		t.Fatalf("shared try while a writer holds: %v", err)
	}
	rd := async(ctx, b2, k, shared(store.WaitForever))
	pending(t, rd, "reader while the writer holds")
	mustRelease(t, wl.l)
	rl := await(t, rd)
	if rl.err != nil {
		t.Fatal(rl.err)
	}
	mustRelease(t, rl.l)
}

func TestTimeoutNotSooner(t *testing.T) {
	b1, b2 := pair(t)
	k := store.Key{String: t.Name()}
	l := mustAcquire(t, b1, k, excl(0))
	defer mustRelease(t, l)
	const d = 200 * time.Millisecond
	for name, b := range map[string]*Backend{"other backend (file)": b2, "same backend (queue)": b1} {
		start := time.Now()
		_, err := b.Acquire(context.Background(), k, excl(d))
		waited := time.Since(start)
		if !errors.Is(err, store.ErrNotAcquired) {
			t.Fatalf("%s: %v, want ErrNotAcquired", name, err)
		}
		if waited < d {
			t.Fatalf("%s: gave up after %v, sooner than %v", name, waited, d)
		}
	}
}

func TestCancelAndDeadline(t *testing.T) {
	b1, b2 := pair(t)
	k := store.Key{String: t.Name()}
	l := mustAcquire(t, b1, k, excl(0))
	ctx, cancel := context.WithCancel(context.Background())
	w := async(ctx, b2, k, excl(store.WaitForever))
	pending(t, w, "waiter")
	cancel()
	if r := await(t, w); !errors.Is(r.err, context.Canceled) {
		t.Fatalf("canceled wait: %v", r.err)
	}
	dctx, dcancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer dcancel()
	if _, err := b2.Acquire(dctx, k, excl(time.Hour)); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("deadline: %v", err)
	}
	mustRelease(t, l)
	if held(t, b1, k) {
		t.Fatal("a waiter that gave up holds the lock")
	}
	if _, err := b2.Acquire(ctx, k, excl(0)); !errors.Is(err, context.Canceled) {
		t.Fatalf("Acquire with a canceled ctx: %v", err)
	}
}

// Waiters that give up at random moments, and timed waits, leave nothing
// locked, open or running.
func TestRandomGiveUpLeavesNothing(t *testing.T) {
	b1, b2 := pair(t)
	k := store.Key{String: t.Name()}
	var wg sync.WaitGroup
	var holders atomic.Int32
	for g := range 8 {
		b := b1
		if g%2 == 1 {
			b = b2
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 60 {
				ctx, cancel := context.WithTimeout(context.Background(), time.Duration(rand.IntN(2000))*time.Microsecond)
				req := excl(time.Duration(rand.IntN(3000)) * time.Microsecond)
				if i%4 == 0 {
					req.Mode = store.ModeShared
				}
				l, err := b.Acquire(ctx, k, req)
				if err == nil {
					if req.Mode == store.ModeExclusive && holders.Add(1) != 1 {
						t.Error("two exclusive holders")
					}
					time.Sleep(time.Duration(rand.IntN(300)) * time.Microsecond)
					if req.Mode == store.ModeExclusive {
						holders.Add(-1)
					}
					if err := l.Release(context.Background()); err != nil {
						t.Error(err)
					}
				} else if !errors.Is(err, store.ErrNotAcquired) && ctx.Err() == nil {
					t.Errorf("Acquire: %v", err)
				}
				cancel()
			}
		}()
	}
	wg.Wait()
	if held(t, b1, k) {
		t.Fatal("lock held after every caller gave up or released")
	}
	mustRelease(t, mustAcquire(t, b1, k, excl(0)))
}

// A holder that unlocks without closing its file sends no file event; the
// waiter's re-checks still let it in.
func TestForeignUnlockWithoutClose(t *testing.T) {
	b := newBackend(t, t.TempDir())
	k := store.Key{String: t.Name()}
	fd, err := syscall.Open(b.Path(k), syscall.O_RDWR|syscall.O_CREAT|syscall.O_CLOEXEC, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Close(fd)
	if err := syscall.Flock(fd, syscall.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	w := async(context.Background(), b, k, excl(store.WaitForever))
	pending(t, w, "waiter on a foreign lock")
	if err := syscall.Flock(fd, syscall.LOCK_UN); err != nil {
		t.Fatal(err)
	}
	r := await(t, w)
	if r.err != nil {
		t.Fatal(r.err)
	}
	mustRelease(t, r.l)
}

// No key, whatever it holds, makes the backend touch a file outside its
// directory.
func TestKeysStayInDirectory(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "a", "locks")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	b := newBackend(t, dir)
	huge := strings.Repeat("../", 1<<20/3)
	keys := []string{
		"../../etc/passwd", "/", "..", ".", "", "/etc/passwd", "a/../../../b", "\x00", "x\x00/../y",
		"..\\..\\windows", "-rf", ".hidden", "~", "$(rm -rf /)", "ключ/🔒", "\xff\xfe", huge,
		strings.Repeat("a", 1<<20), "a/b/c/d/e/f/g/h/i/j/k/l/m/n/o/p",
	}
	for _, s := range keys {
		k := store.Key{String: s}
		if p := b.Path(k); filepath.Dir(p) != dir {
			t.Fatalf("Path(%.40q) = %s, outside %s", s, p, dir)
		}
		l := mustAcquire(t, b, k, excl(0))
		if !held(t, b, k) {
			t.Fatalf("%.40q not held", s)
		}
		mustRelease(t, l)
		mustRelease(t, mustAcquire(t, b, k, shared(0)))
	}
	// Different keys, different files (the readable prefixes collide).
	if b.Path(store.Key{String: "a/b"}) == b.Path(store.Key{String: "a_b"}) {
		t.Fatal("two keys share a lock file")
	}
	var files []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() {
			files = append(files, p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		_, ok := parseFileName(filepath.Base(f))
		if filepath.Dir(f) != dir || !ok {
			t.Errorf("unexpected file %s", f)
		}
	}
	if len(files) != len(keys) {
		t.Errorf("%d files for %d keys", len(files), len(keys))
	}
	if infos, err := b.Locks(context.Background()); err == nil && len(infos) != 0 {
		t.Errorf("Locks after all releases: %+v", infos)
	}
}

func TestFileNames(t *testing.T) {
	for key, prefix := range map[string]string{
		"myapp/order/123":        "myapp_order_123",
		"":                       "key",
		"..":                     "_.",
		".hidden":                "_hidden",
		"-rf":                    "_rf",
		"a.b-c":                  "a.b-c",
		strings.Repeat("x", 100): strings.Repeat("x", readableLen),
	} {
		name := fileName(key)
		got, ok := parseFileName(name)
		if !ok || got != prefix {
			t.Errorf("fileName(%q) = %q; readable part %q (ok %v), want %q", key, name, got, ok, prefix)
		}
	}
	for _, bad := range []string{"x.lock", "-" + strings.Repeat("0", 64) + ".lock", "a-" + strings.Repeat("g", 64) + ".lock", ".kannuki-probe-1-ab"} {
		if _, ok := parseFileName(bad); ok {
			t.Errorf("parseFileName(%q) accepted", bad)
		}
	}
}

func TestMissingOrUnusableDirectory(t *testing.T) {
	root := t.TempDir()
	_, err := New(filepath.Join(root, "nope"), Options{})
	if !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), "does not exist") || !strings.HasPrefix(err.Error(), "kannuki: ") {
		t.Fatalf("missing directory: %v", err)
	}
	file := filepath.Join(root, "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := New(file, Options{}); err == nil || !strings.Contains(err.Error(), "not a directory") {
		t.Fatalf("file as directory: %v", err)
	}
	// Unwritable: a read-only directory for a normal user; root writes
	// anywhere on a normal filesystem, so use /proc, where nobody creates files.
	ro := filepath.Join(root, "ro")
	if err := os.Mkdir(ro, 0o500); err != nil {
		t.Fatal(err)
	}
	if os.Geteuid() == 0 {
		ro = "/proc/1"
		if runtime.GOOS != "linux" {
			t.Skip("no unwritable directory for root here")
		}
	}
	if _, err := New(ro, Options{}); err == nil || !strings.Contains(err.Error(), "not writable") {
		t.Fatalf("unwritable directory: %v", err)
	}
	if _, err := New(root, Options{Perm: 0o1777 | fs.ModeDir}); !errors.Is(err, store.ErrInvalidArgument) {
		t.Fatalf("bad Perm: %v", err)
	}
}

func TestDefaultDirectory(t *testing.T) {
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	t.Setenv("XDG_RUNTIME_DIR", t.TempDir()) // ignored: cron and shells must agree
	b, err := New("", Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	want := filepath.Join(tmp, "kannuki-"+strconv.Itoa(os.Geteuid()))
	if b.Dir() != want {
		t.Fatalf("Dir = %s, want %s", b.Dir(), want)
	}
	fi, err := os.Stat(want)
	if err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("default directory: %v, mode %v", err, fi.Mode())
	}
	mustRelease(t, mustAcquire(t, b, store.Key{String: t.Name()}, excl(0)))

	// A default directory others can write to is refused.
	if err := os.Chmod(want, 0o777); err != nil {
		t.Fatal(err)
	}
	if _, err := New("", Options{}); err == nil || !strings.Contains(err.Error(), "not private") {
		t.Fatalf("world-writable default directory: %v", err)
	}
	// So is a symlink in its place.
	os.RemoveAll(want)
	if err := os.Symlink(t.TempDir(), want); err != nil {
		t.Fatal(err)
	}
	if _, err := New("", Options{}); err == nil || !strings.Contains(err.Error(), "not a directory") {
		t.Fatalf("symlinked default directory: %v", err)
	}
}

func TestSymlinkAndOddFilesRefused(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "locks")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	b := newBackend(t, dir)
	k := store.Key{String: "victim"}
	target := filepath.Join(root, "target")
	if err := os.Symlink(target, b.Path(k)); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Acquire(context.Background(), k, excl(0)); err == nil || !strings.Contains(err.Error(), "symlink") {
		t.Fatalf("symlinked lock file: %v", err)
	}
	if _, err := os.Lstat(target); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("the symlink's target was created: %v", err)
	}
	k2 := store.Key{String: "fifo"}
	if err := syscall.Mkfifo(b.Path(k2), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Acquire(context.Background(), k2, excl(0)); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Fatalf("FIFO as lock file: %v", err)
	}
}

// A lock whose file is removed protects nothing any more: Check and
// Release say so, and a new Acquire locks the new file.
func TestRemovedLockFileIsLost(t *testing.T) {
	b1, b2 := pair(t)
	ctx := context.Background()
	k := store.Key{String: t.Name()}
	l := mustAcquire(t, b1, k, excl(0))
	if err := l.(store.Checker).Check(ctx); err != nil {
		t.Fatalf("Check: %v", err)
	}
	w := async(ctx, b2, k, excl(store.WaitForever))
	pending(t, w, "waiter")
	if err := os.Remove(b1.Path(k)); err != nil {
		t.Fatal(err)
	}
	r := await(t, w) // the waiter notices and locks a new file
	if r.err != nil {
		t.Fatal(r.err)
	}
	if err := l.(store.Checker).Check(ctx); !errors.Is(err, store.ErrLockLost) {
		t.Fatalf("Check after removal: %v", err)
	}
	if err := l.Release(ctx); !errors.Is(err, store.ErrLockLost) {
		t.Fatalf("Release after removal: %v", err)
	}
	mustRelease(t, r.l)
}

func TestLocksAndRecords(t *testing.T) {
	b1, b2 := pair(t)
	if !b1.procLocks {
		t.Skip("no usable /proc/locks here")
	}
	ctx := context.Background()
	ke := store.Key{String: "records/exclusive"}
	ks := store.Key{String: "records/shared"}
	le := mustAcquire(t, b1, ke, excl(0))
	ls1 := mustAcquire(t, b1, ks, shared(0))
	ls2 := mustAcquire(t, b2, ks, shared(0))
	infos, err := b2.Locks(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(infos) != 3 {
		t.Fatalf("Locks = %+v, want 3 entries", infos)
	}
	e := infos[0]
	if e.Name != ke.String || e.Mode != store.ModeExclusive || !e.Granted || e.PID != int64(os.Getpid()) ||
		e.Since.IsZero() || time.Since(e.Since) > time.Minute || e.Application == "" {
		t.Errorf("exclusive entry %+v", e)
	}
	for _, s := range infos[1:] {
		if s.Name != ks.String || s.Mode != store.ModeShared || !s.Granted {
			t.Errorf("shared entry %+v", s)
		}
	}
	mustRelease(t, le)
	mustRelease(t, ls1)
	mustRelease(t, ls2)
	if infos, err := b1.Locks(ctx); err != nil || len(infos) != 0 {
		t.Fatalf("Locks after release: %+v, %v", infos, err)
	}
	// The record stays in the file, but nothing trusts it without a holder.
	if rec := readRecord(b1.Path(ke)); rec.Key != ke.String || rec.PID != int64(os.Getpid()) {
		t.Fatalf("record after release: %+v", rec)
	}
}

func TestLocker(t *testing.T) {
	b1, b2 := pair(t)
	l1 := kannuki.New(b1, kannuki.Options{KeyPrefix: "app"})
	l2 := kannuki.New(b2, kannuki.Options{KeyPrefix: "app"})
	ctx := context.Background()
	err := l1.WithLock(ctx, "job", func(ctx context.Context) error {
		ok, err := l2.TryLock(ctx, "job", func(context.Context) error { return errors.New("ran") })
		if ok || err != nil {
			t.Errorf("TryLock while held elsewhere: %v, %v", ok, err)
		}
		if h, err := l2.Held(ctx, "job"); !h || err != nil {
			t.Errorf("Held: %v, %v", h, err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	ran := false
	if ok, err := l2.TryLock(ctx, "job", func(context.Context) error { ran = true; return nil }); !ok || err != nil || !ran {
		t.Fatalf("TryLock when free: %v, %v, ran %v", ok, err, ran)
	}
	if _, err := os.Stat(b1.Path(store.Key{String: "app/job"})); err != nil {
		t.Fatalf("lock file of the prefixed key: %v", err)
	}
}
