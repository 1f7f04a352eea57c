package chaos

import (
	"context"
	"errors"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/kannuki-go/kannuki/keys"
	"github.com/kannuki-go/kannuki/store"

	"github.com/kannuki-go/kannuki"
	"github.com/kannuki-go/kannuki/internal/pgsql"
	"github.com/kannuki-go/kannuki/internal/saidonce"
	"github.com/kannuki-go/kannuki/kannukifile"
	"github.com/kannuki-go/kannuki/kannukimem"
)

// FuzzKeyDerivation: every key scheme accepts or rejects (prefix, key)
// cleanly and deterministically, and what it accepts is safe everywhere a
// key goes: the PostgreSQL statements (valid UTF-8, one comment that ends
// where it should), the MySQL name (at most 64 characters) and the file
// store's file name (directly inside the lock directory).
func FuzzKeyDerivation(f *testing.F) {
	for _, k := range acceptedKeys() {
		f.Add("", k)
		f.Add(k, "k")
	}
	for _, k := range rejectedKeys() {
		if len(k) < 5000 {
			f.Add("", k)
			f.Add(k, "k")
		}
	}
	f.Add("app", "4242")
	f.Add("", "1,2")
	f.Add("", strings.Repeat("é", 100)+"*/")
	dir := f.TempDir()
	fb, err := kannukifile.New(dir, kannukifile.Options{})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { fb.Close() })
	schemes := []keys.Scheme{keys.Ruby{}, keys.Advisory{}, keys.Advisory{Namespace: -7}, keys.Raw{}}
	f.Fuzz(func(t *testing.T, prefix, key string) {
		for _, s := range schemes {
			k, err := s.Derive(prefix, key)
			if err != nil {
				if !errors.Is(err, kannuki.ErrInvalidKey) {
					t.Fatalf("%T.Derive(%q, %q): %v; want ErrInvalidKey", s, prefix, key, err)
				}
				if !strings.HasPrefix(err.Error(), "kannuki:") || len(err.Error()) > 1024 {
					t.Fatalf("%T.Derive: error %.300q: want a short kannuki: message", s, err.Error())
				}
				continue
			}
			k2, err := s.Derive(prefix, key)
			if err != nil || k2 != k {
				t.Fatalf("%T.Derive(%q, %q) is not deterministic: %+v then %+v, %v", s, prefix, key, k, k2, err)
			}
			if !utf8.ValidString(k.String) || strings.IndexByte(k.String, 0) >= 0 || len(k.String) > keys.MaxKeyLen {
				t.Fatalf("%T accepted an unusable key %q", s, k.String)
			}
			if _, ok := s.(keys.Ruby); ok {
				if n := utf8.RuneCountInString(k.Name); n > 64 || !utf8.ValidString(k.Name) {
					t.Fatalf("RubyKeys name %q: %d characters, valid %v; want at most 64 valid ones", k.Name, n, utf8.ValidString(k.Name))
				}
			}
			for _, m := range []store.Mode{store.ModeExclusive, store.ModeShared} {
				for _, stmt := range []string{pgsql.TryLock(k, m), pgsql.Lock(k, m, time.Second), pgsql.Lock(k, m, store.WaitForever), pgsql.Comment(k.String)} {
					checkStatement(t, stmt)
				}
			}
			p := fb.Path(k)
			if filepath.Dir(p) != fb.Dir() {
				t.Fatalf("lock file of %q is %s: not directly inside %s", k.String, p, fb.Dir())
			}
			if base := filepath.Base(p); base == "." || base == ".." || strings.ContainsAny(base, "/\x00") {
				t.Fatalf("lock file name %q of %q", base, k.String)
			}
		}
	})
}

// checkStatement: valid UTF-8 (PostgreSQL rejects the whole statement
// otherwise), exactly one comment, closed at the very end, and nothing
// that could open another one inside it.
func checkStatement(t *testing.T, stmt string) {
	t.Helper()
	if !utf8.ValidString(stmt) {
		t.Fatalf("statement is not valid UTF-8: %q", stmt)
	}
	if strings.IndexByte(stmt, 0) >= 0 {
		t.Fatalf("statement contains NUL: %q", stmt)
	}
	open := strings.Index(stmt, "/*")
	if open < 0 {
		return // no comment (the unlock)
	}
	body := stmt[open+2:]
	if !strings.HasSuffix(body, "*/") || strings.Count(body, "*/") != 1 || strings.Contains(body, "/*") {
		t.Fatalf("the key's comment does not end where it should: %q", stmt)
	}
}

// FuzzLockerOptions drives the Locker's option handling (timeouts, default
// timeouts, keepalive intervals, retry schedules, modes, prefixes) on the
// memory store, contended or not: no panic, negative durations give
// ErrInvalidArgument, every failure is a clear kannuki: error, fn runs
// exactly when the call succeeds, and the call ends within its context.
func FuzzLockerOptions(f *testing.F) {
	f.Add(int64(0), int64(0), int64(0), 0, int64(0), 0.0, false, false, uint8(0), "app", "k")
	f.Add(int64(-1), int64(5e6), int64(1e6), 3, int64(1e6), 0.5, true, true, uint8(1), "", "k")
	f.Add(int64(1<<62), int64(-5), int64(-1), -1, int64(1<<62), 2.0, true, false, uint8(2), "a/b", "../k")
	f.Add(int64(1), int64(1), int64(1), 1000000, int64(-1), -1.0, false, true, uint8(3), "x", "y")
	f.Fuzz(func(t *testing.T, timeout, defTimeout, keepalive int64, attempts int, interval int64, jitter float64, shared, contended bool, strat uint8, prefix, key string) {
		m := kannukimem.New()
		var strategy kannuki.Strategy
		switch strat % 4 {
		case 2:
			strategy = kannuki.Retry{Attempts: attempts, Interval: time.Duration(interval), Jitter: jitter, MaxInterval: time.Duration(interval / 3), Multiplier: float64(strat%3) * 0.75}
		}
		l := kannuki.New(m, kannuki.Options{KeyPrefix: prefix, DefaultTimeout: time.Duration(defTimeout), KeepaliveInterval: time.Duration(keepalive), Strategy: strategy})
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
		defer cancel()
		if contended {
			h, err := l.Acquire(context.Background(), key, kannuki.Timeout(0))
			if err == nil {
				defer h.Release(context.Background())
			}
		}
		var opts []kannuki.CallOption
		if timeout != 0 {
			opts = append(opts, kannuki.Timeout(time.Duration(timeout)))
		}
		if shared {
			opts = append(opts, kannuki.Shared())
		}
		if strat%4 == 1 {
			opts = append(opts, kannuki.Timeout(0)) // one try
		}
		ran := false
		start := time.Now()
		err := l.WithLock(ctx, key, func(context.Context) error { ran = true; return nil }, opts...)
		if d := time.Since(start); d > time.Second {
			t.Fatalf("WithLock took %s with a 30ms context", d)
		}
		switch {
		case err == nil && !ran:
			t.Fatal("WithLock returned nil without running fn")
		case err != nil && ran:
			t.Fatalf("fn ran, then %v", err)
		case err != nil && saidonce.Problem(err.Error()) != "":
			t.Fatalf("unclear error %v", err)
		case (timeout < 0 || defTimeout < 0) && !errors.Is(err, kannuki.ErrInvalidArgument) && !errors.Is(err, kannuki.ErrInvalidKey):
			t.Fatalf("negative timeout %d / default %d: %v; want ErrInvalidArgument", timeout, defTimeout, err)
		}
	})
}

// FuzzCLIDSN runs "kannuki status" with fuzzed DSNs that carry a known
// password: whatever the DSN's shape, the CLI must not print the password
// nor crash. The host is always 127.0.0.1:1 (nothing listens there) and
// the fuzzed parts cannot name another host, so no traffic leaves this
// machine. Each input costs a process start: fuzz it with -fuzztime.
func FuzzCLIDSN(f *testing.F) {
	f.Add(uint8(0), "pa:ss", "sslmode=disable")
	f.Add(uint8(1), "p%41ss", "timeout=1s")
	f.Add(uint8(2), "p ss+x", "tls=bogus&password=x")
	f.Add(uint8(0), "pw!$&'()*+,;=", "connect_timeout=x")
	f.Add(uint8(3), "\x7f\x01", "")
	cliBinary(f)
	f.Fuzz(func(t *testing.T, scheme uint8, pass, query string) {
		if strings.ContainsAny(pass, "@/?#\\[]") || strings.ContainsAny(query, "#@/\\") || strings.Contains(strings.ToLower(query), "host") {
			t.Skip() // could move the host: only the password and options are fuzzed
		}
		if !utf8.ValidString(pass) || strings.IndexByte(pass+query, 0) >= 0 {
			t.Skip()
		}
		// The password starts with a marker that no escaping changes and no
		// message contains by chance: any trace of it in the output is a
		// leak of (part of) the password.
		const marker = "Zq9XkW"
		schemes := []string{"postgres", "postgresql", "mysql", "mariadb"}
		dsn := schemes[int(scheme)%len(schemes)] + "://user:" + marker + pass + "@127.0.0.1:1/db"
		if query != "" {
			dsn += "?" + query
		}
		if u, err := url.Parse(dsn); err == nil && u.Hostname() != "127.0.0.1" {
			t.Skip()
		}
		for _, env := range [][]string{nil, {"KANNUKI_DSN=" + dsn}} {
			args := []string{"status", "--dsn", dsn, "k"}
			if env != nil {
				args = []string{"status", "-v", "k"}
			}
			r := runCLI(t, env, args...)
			if r.code == 0 {
				t.Fatalf("status succeeded against 127.0.0.1:1 with %q", dsn)
			}
			if out := r.stdout + r.stderr; strings.Contains(out, marker) {
				t.Fatalf("the output shows the password of %q:\n%s", dsn, out)
			}
		}
	})
}
