package chaos

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/kannuki-go/kannuki/keys"
	"github.com/kannuki-go/kannuki/store"

	"github.com/kannuki-go/kannuki"
	"github.com/kannuki-go/kannuki/kannukifile"
	"github.com/kannuki-go/kannuki/kannukimem"
)

// canary is the name of a table every injection string tries to drop.
var canary = "kannuki_chaos_canary_" + randHex(4)

// rejectedKeys are keys the key layer must refuse with ErrInvalidKey
// before any backend sees them.
func rejectedKeys() map[string]string {
	return map[string]string{
		"empty":          "",
		"1MiB":           strings.Repeat("k", 1<<20),
		"MaxKeyLen+1":    strings.Repeat("k", keys.MaxKeyLen+1),
		"NUL":            "a\x00b",
		"NUL-only":       "\x00",
		"invalid-UTF-8":  "a\xff\xfeb",
		"lone-surrogate": "a\xed\xa0\x80b",
		"truncated-rune": "key\xe3\x81",
	}
}

// acceptedKeys are hostile but valid keys: each must lock exactly like a
// plain key, never reach SQL outside a bound parameter or a sanitized
// comment, and never name a file outside the lock directory.
func acceptedKeys() map[string]string {
	return map[string]string{
		"single-quote":      "'",
		"double-quote":      `"`,
		"backtick":          "`",
		"comment-end":       "*/",
		"comment-start":     "/*",
		"line-comment":      "--",
		"drop-quote":        "'); DROP TABLE " + canary + "; --",
		"drop-comment":      "*/ DROP TABLE " + canary + "; /*",
		"drop-backslash":    `\'; DROP TABLE ` + canary + "; --",
		"drop-dollar":       "$$; DROP TABLE " + canary + "; $$",
		"drop-hex":          "0x27; DROP TABLE " + canary,
		"format-verbs":      "%s%n%x%%",
		"control":           "\r\n\t\x01\x1f\x7f",
		"unicode":           "日本語のキー/ключ/🔒",
		"unicode-quotes":    "＇；ＤＲＯＰ　ＴＡＢＬＥ",
		"rtl-override":      "a\u202eb",
		"long-unicode":      strings.Repeat("é", 150), // 300 bytes: comments are cut
		"long-4byte":        strings.Repeat("🔑", 70),  // 280 bytes, 70 runes: MySQL name hashing
		"65-bytes":          strings.Repeat("x", 65),  // just past the MySQL name length
		"MaxKeyLen":         strings.Repeat("k", keys.MaxKeyLen),
		"MaxKeyLen-unicode": strings.Repeat("é", keys.MaxKeyLen/2),
		"traversal":         "../../../../../../etc/passwd",
		"dotdot":            "..",
		"dot":               ".",
		"slash":             "/",
		"abs-path":          "/tmp/kannuki-chaos-escape",
		"backslash-path":    `..\..\windows`,
		"tilde":             "~root/.ssh",
		"dash":              "-rf",
		"space":             " ",
	}
}

// TestBadInput runs the corpus through every backend via the Locker,
// as keys and as key prefixes.
func TestBadInput(t *testing.T) {
	kinds := append([]string{"mem"}, allKinds...)
	for _, kind := range kinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			b1, b2 := inputBackends(t, kind)
			errs := map[string]int64{}
			var mu sync.Mutex
			t.Run("Rejected", func(t *testing.T) {
				l := kannuki.New(b1, kannuki.Options{})
				ran := false
				fn := func(context.Context) error { ran = true; return nil }
				for name, key := range rejectedKeys() {
					ctx, cancel := context.WithTimeout(context.Background(), hangGuard)
					err := l.WithLock(ctx, key, fn)
					if !errors.Is(err, kannuki.ErrInvalidKey) {
						t.Errorf("key %s: %v; want ErrInvalidKey", name, err)
					}
					if err != nil && len(err.Error()) > 1024 {
						t.Errorf("key %s: the error is %d bytes long: it quotes the whole key", name, len(err.Error()))
					}
					if _, err := l.Held(ctx, key); !errors.Is(err, kannuki.ErrInvalidKey) {
						t.Errorf("Held(%s): %v; want ErrInvalidKey", name, err)
					}
					pl := kannuki.New(b1, kannuki.Options{KeyPrefix: key})
					if name != "empty" { // an empty prefix means none
						if err := pl.WithLock(ctx, "k", fn); !errors.Is(err, kannuki.ErrInvalidKey) {
							t.Errorf("prefix %s: %v; want ErrInvalidKey", name, err)
						}
					}
					cancel()
					mu.Lock()
					errs["rejected"]++
					mu.Unlock()
				}
				if ran {
					t.Error("fn ran for a rejected key")
				}
			})
			t.Run("Accepted", func(t *testing.T) {
				for name, key := range acceptedKeys() {
					t.Run(name, func(t *testing.T) {
						lockLikeAnyKey(t, kind, b1, b2, "", key)
						lockLikeAnyKey(t, kind, b1, b2, key, "k")
						mu.Lock()
						errs["accepted"]++
						mu.Unlock()
					})
				}
			})
			record(t, Figure{Backend: kind, Counts: map[string]int64{"keys_rejected": int64(len(rejectedKeys())), "keys_accepted": int64(len(acceptedKeys()))}})
		})
	}
	t.Run("CanarySurvives", func(t *testing.T) { checkCanaries(t) })
}

// inputBackends returns two independent backends of kind on one store
// (two pools, or two file backends on one directory), and creates the
// canary tables.
func inputBackends(t *testing.T, kind string) (store.Backend, store.Backend) {
	t.Helper()
	switch {
	case kind == "mem":
		m := kannukimem.New()
		return m, m
	case kind == kindFile:
		sandbox := t.TempDir()
		dir := filepath.Join(sandbox, "locks")
		if err := os.Mkdir(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { checkSandbox(t, sandbox, dir) })
		return mustBackend(t, backendConfig{Kind: kind, Dir: dir}), mustBackend(t, backendConfig{Kind: kind, Dir: dir})
	case isPG(kind):
		makeCanary(t, kindPgxv5)
	case kind == kindMySQL:
		makeCanary(t, kindMySQL)
	}
	cfg := backendConfig{Kind: kind, MaxConns: 4, AppName: "kannuki-chaos-input"}
	return mustBackend(t, cfg), mustBackend(t, cfg)
}

var canaryOnce sync.Map

// makeCanary creates the canary table on kind's server once per run.
func makeCanary(t *testing.T, kind string) {
	t.Helper()
	if _, done := canaryOnce.LoadOrStore(kind, true); done {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if kind == kindMySQL {
		db := mysqlAdmin(t)
		if _, err := db.ExecContext(ctx, "CREATE TABLE "+canary+" (x int)"); err != nil {
			t.Fatal(err)
		}
		return
	}
	c := pgAdmin(t)
	if _, err := c.Exec(ctx, "CREATE TABLE "+canary+" (x int)"); err != nil {
		t.Fatal(err)
	}
}

// checkCanaries runs after every backend's corpus: the canary tables must
// still be there. Then it drops them.
func checkCanaries(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, ok := canaryOnce.Load(kindPgxv5); ok {
		c := pgAdmin(t)
		var exists bool
		if err := c.QueryRow(ctx, "SELECT to_regclass($1) IS NOT NULL", canary).Scan(&exists); err != nil || !exists {
			t.Errorf("PostgreSQL canary table %s gone (err %v): a key reached SQL", canary, err)
		}
		_, _ = c.Exec(ctx, "DROP TABLE IF EXISTS "+canary)
	}
	if _, ok := canaryOnce.Load(kindMySQL); ok {
		db := mysqlAdmin(t)
		var n int
		if err := db.QueryRowContext(ctx, "SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = ?", canary).Scan(&n); err != nil || n != 1 {
			t.Errorf("MariaDB canary table %s gone (err %v): a key reached SQL", canary, err)
		}
		_, _ = db.ExecContext(ctx, "DROP TABLE IF EXISTS "+canary)
	}
}

// lockLikeAnyKey checks that prefix/key locks and excludes like any key:
// held and exclusive while held (also through a server-side wait), kept
// by the keepalive, free after the release, and handed to a waiter.
func lockLikeAnyKey(t *testing.T, kind string, b1, b2 store.Backend, prefix, key string) {
	t.Helper()
	what := fmt.Sprintf("key %.40q", key)
	if prefix != "" {
		what = fmt.Sprintf("prefix %.40q", prefix)
	}
	// A random tail keeps runs apart; the hostile part stays in front,
	// where prefixes and comments put it. The whole key stays within
	// MaxKeyLen, cut at a character boundary.
	tail := "-" + randHex(4)
	if prefix != "" {
		prefix = cutRunes(prefix, keys.MaxKeyLen-len(key)-len(tail)-1)
		key += tail
	} else {
		key = cutRunes(key, keys.MaxKeyLen-len(tail)) + tail
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*hangGuard)
	defer cancel()
	l1 := kannuki.New(b1, kannuki.Options{KeyPrefix: prefix, KeepaliveInterval: 20 * time.Millisecond})
	l2 := kannuki.New(b2, kannuki.Options{KeyPrefix: prefix})
	err := l1.WithLock(ctx, key, func(fctx context.Context) error {
		if held, err := l2.Held(ctx, key); err != nil || !held {
			return fmt.Errorf("Held from another client while locked = %v, %v", held, err)
		}
		if ok, err := l2.TryLock(ctx, key, func(context.Context) error { return nil }); ok || err != nil {
			return fmt.Errorf("TryLock from another client while locked = %v, %v; want false, nil", ok, err)
		}
		// The waiting statement carries the key in a comment (PostgreSQL)
		// or as a hex literal (MariaDB).
		err := l2.WithLock(ctx, key, func(context.Context) error { return nil }, kannuki.Timeout(30*time.Millisecond))
		if !errors.Is(err, kannuki.ErrNotAcquired) {
			return fmt.Errorf("a timed wait from another client while locked: %v; want ErrNotAcquired", err)
		}
		// Let a few keepalives run: they carry the key in a comment too.
		select {
		case <-time.After(100 * time.Millisecond):
		case <-fctx.Done():
			return fmt.Errorf("fn's context ended: %w", context.Cause(fctx))
		}
		return nil
	})
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	if held, err := l2.Held(ctx, key); err != nil || held {
		t.Fatalf("%s: Held after the release = %v, %v", what, held, err)
	}
	// A waiter gets the lock when the holder releases it.
	h, err := l1.Acquire(ctx, key)
	if err != nil {
		t.Fatalf("%s: Acquire: %v", what, err)
	}
	got := make(chan error, 1)
	go func() {
		got <- l2.WithLock(ctx, key, func(context.Context) error { return nil }, kannuki.Timeout(hangGuard))
	}()
	time.Sleep(20 * time.Millisecond)
	if err := h.Release(ctx); err != nil {
		t.Fatalf("%s: Release: %v", what, err)
	}
	if err := <-got; err != nil {
		t.Fatalf("%s: the waiter after the release: %v", what, err)
	}
	_ = kind
}

// cutRunes cuts s to at most n bytes at a character boundary.
func cutRunes(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// checkSandbox: the file store's lock directory sits alone in a sandbox
// directory; after the corpus, nothing may exist in the sandbox but the
// lock directory, and nothing in the lock directory but regular files.
func checkSandbox(t *testing.T, sandbox, dir string) {
	t.Helper()
	err := filepath.WalkDir(sandbox, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		switch {
		case path == sandbox, path == dir:
		case filepath.Dir(path) != dir:
			t.Errorf("a lock file escaped its directory: %s", path)
		case !d.Type().IsRegular():
			t.Errorf("not a regular file in the lock directory: %s (%v)", path, d.Type())
		}
		return nil
	})
	if err != nil {
		t.Error(err)
	}
	if _, err := os.Stat("/tmp/kannuki-chaos-escape"); err == nil {
		t.Error("/tmp/kannuki-chaos-escape exists: a key named a file outside the lock directory")
	}
}

// TestLockFileSymlink: a symlink planted where a key's lock file goes must
// not make the file store create or open a file outside its directory.
func TestLockFileSymlink(t *testing.T) {
	sandbox := t.TempDir()
	dir := filepath.Join(sandbox, "locks")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	b, err := kannukifile.New(dir, kannukifile.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	key, err := keys.Ruby{}.Derive("", "../planted")
	if err != nil {
		t.Fatal(err)
	}
	target := filepath.Join(sandbox, "outside")
	if err := os.Symlink(target, b.Path(key)); err != nil {
		t.Fatal(err)
	}
	l := kannuki.New(b, kannuki.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), hangGuard)
	defer cancel()
	err = l.WithLock(ctx, "../planted", func(context.Context) error { return nil })
	if err == nil {
		t.Error("locked through a planted symlink")
	}
	if _, serr := os.Lstat(target); serr == nil {
		t.Errorf("the symlink's target %s was created", target)
	}
	t.Logf("planted symlink: %v", err)
	record(t, Figure{Backend: kindFile, Counts: map[string]int64{"symlink_refused": 1}, Samples: map[string]string{"symlink": fmt.Sprint(err)}})
}
