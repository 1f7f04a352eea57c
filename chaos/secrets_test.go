package chaos

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kannuki-go/kannuki"
	"github.com/kannuki-go/kannuki/internal/saidonce"
	"github.com/kannuki-go/kannuki/store"
)

// leaks reports which spellings of secret appear in s.
func leaks(s, secret string) bool {
	for _, v := range []string{secret, url.QueryEscape(secret), url.PathEscape(secret)} {
		if strings.Contains(s, v) {
			return true
		}
	}
	return false
}

// newSecret is a password no server knows; it contains characters that
// URL forms escape, so escaped spellings are checked too.
func newSecret() string { return "Chaos-S3cret+" + randHex(6) + "!" }

// TestSecretsLibrary: a DSN's password must not appear in any error the
// Locker returns, in its slog output, or in the events its hooks receive
// (kannukiotel copies event errors into spans with KeyAttribute;
// kannukiprom labels only reasons), whatever fails: an unreachable server,
// a wrong password, a missing database.
func TestSecretsLibrary(t *testing.T) {
	secret := newSecret()
	enc := url.QueryEscape(secret)
	cases := map[string]backendConfig{
		"pg-unreachable":    {DSN: "postgres://postgres:" + enc + "@127.0.0.1:1/test?sslmode=disable&connect_timeout=2"},
		"pg-no-database":    {DSN: "postgres://postgres:" + enc + "@" + pgHost() + "/kannuki_chaos_missing_" + randHex(3) + "?sslmode=disable"},
		"mysql-unreachable": {DSN: "root:" + secret + "@tcp(127.0.0.1:1)/test?timeout=2s"},
		"mysql-password":    {DSN: "root:" + secret + "@tcp(" + mysqlAddr() + ")/test?timeout=5s"},
	}
	var mu sync.Mutex
	checked := int64(0)
	for name, cfg := range cases {
		kinds := []string{kindPgxv5, kindPgPgx, kindPgPQ}
		if strings.HasPrefix(name, "mysql") {
			kinds = []string{kindMySQL}
		}
		for _, kind := range kinds {
			t.Run(name+"/"+kind, func(t *testing.T) {
				t.Parallel()
				cfg := cfg
				cfg.Kind, cfg.Lazy, cfg.MaxConns = kind, true, 2
				b, closeFn, err := openBackend(context.Background(), cfg)
				if err != nil {
					if leaks(err.Error(), secret) {
						t.Errorf("opening the pool: the error shows the password: %v", err)
					}
					return
				}
				defer closeFn()
				var logs bytes.Buffer
				var events []string
				var emu sync.Mutex
				hook := kannuki.HookFunc(func(_ context.Context, e kannuki.Event) {
					if e.Err != nil {
						emu.Lock()
						events = append(events, e.Err.Error())
						emu.Unlock()
					}
				})
				l := kannuki.New(b, kannuki.Options{
					Hook:   hook,
					Logger: slog.New(slog.NewJSONHandler(&syncWriter{w: &logs}, &slog.HandlerOptions{Level: slog.LevelDebug})),
				})
				ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
				defer cancel()
				fn := func(context.Context) error { return nil }
				var errs []error
				errs = append(errs, l.WithLock(ctx, "chaos/secret", fn, kannuki.Timeout(time.Second)))
				_, err = l.TryLock(ctx, "chaos/secret", fn)
				errs = append(errs, err)
				_, err = l.Held(ctx, "chaos/secret")
				errs = append(errs, err)
				if li, ok := b.(store.Lister); ok {
					// A backend's own error has no "kannuki:" head (the
					// Locker adds it), but must not show the password either.
					if _, err := li.Locks(ctx); err != nil && leaks(err.Error(), secret) {
						t.Errorf("Locks: the error shows the password: %v", err)
					}
				}
				_, err = l.Acquire(ctx, "chaos/secret", kannuki.Timeout(time.Second))
				errs = append(errs, err)
				failed := 0
				for i, err := range errs {
					if err == nil {
						continue
					}
					failed++
					if leaks(err.Error(), secret) {
						t.Errorf("call %d: the error shows the password: %v", i, err)
					}
					if saidonce.Problem(err.Error()) != "" {
						t.Errorf("call %d: unclear error: %v", i, err)
					}
				}
				if failed == 0 {
					t.Fatalf("every call succeeded with a DSN that should fail (%s)", name)
				}
				emu.Lock()
				for _, e := range events {
					if leaks(e, secret) {
						t.Errorf("a hook event's error shows the password: %s", e)
					}
				}
				emu.Unlock()
				if leaks(logs.String(), secret) {
					t.Errorf("the slog output shows the password:\n%s", logs.String())
				}
				mu.Lock()
				checked += int64(len(errs))
				mu.Unlock()
				t.Logf("%s: %v", name, errs[0])
			})
		}
	}
	t.Cleanup(func() {
		record(t, Figure{Counts: map[string]int64{"failing_calls_checked": checked, "dsn_cases": int64(len(cases))},
			Notes: []string{"errors, slog output and hook events checked for the password, its query-escaped and path-escaped forms"}})
	})
}

// syncWriter serializes writes to a buffer shared by goroutines.
type syncWriter struct {
	mu sync.Mutex
	w  *bytes.Buffer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

// pgHost is host:port of the test PostgreSQL.
func pgHost() string {
	if u, err := url.Parse(pgDSN("", "", "")); err == nil && u.Host != "" {
		return u.Host
	}
	return "127.0.0.1:5432"
}

// mysqlAddr is host:port of the test MariaDB.
func mysqlAddr() string {
	if mc, err := mysqlConfig("", nil); err == nil && mc.Net == "tcp" {
		return mc.Addr
	}
	return "127.0.0.1:3306"
}

// TestSecretsCLI: the CLI never prints a DSN's password, given by --dsn or
// $KANNUKI_DSN, whatever fails (parse errors, unreachable servers, a wrong
// password, bad driver parameters), in any output mode.
func TestSecretsCLI(t *testing.T) {
	secret := newSecret()
	enc := url.QueryEscape(secret)
	dsns := []string{
		"postgres://postgres:" + enc + "@127.0.0.1:1/test?sslmode=disable&connect_timeout=2",
		"postgres://postgres:" + enc + "@" + pgHost() + "/kannuki_chaos_missing?sslmode=disable",
		"postgres://postgres:" + enc + "@127.0.0.1:1/test?sslmode=bogus",
		"postgres://postgres:" + enc + "@127.0.0.1:1/test?connect_timeout=x",
		"postgresql://postgres@127.0.0.1:1/test?password=" + enc + "&connect_timeout=2",
		"postgres://postgres:" + secret + "@127.0.0.1:1/test",             // unescaped: '+' and '!' in the user info
		"postgres://postgres:" + secret + "@[::1/test",                    // bad host
		"postgres://postgres:" + secret + "%zz@127.0.0.1:1/test",          // bad escape
		"postgres://postgres:a@b" + secret + "@127.0.0.1:1/test",          // '@' in the password
		"mysql://root:" + enc + "@127.0.0.1:1/test?timeout=2s",            // unreachable
		"mysql://root:" + enc + "@" + mysqlAddr() + "/test?timeout=5s",    // wrong password
		"mysql://root:" + enc + "@127.0.0.1:notaport/test",                // bad port
		"mysql://root:" + enc + "@127.0.0.1:1/test?tls=bogus",             // bad driver parameter
		"mysql://root:" + enc + "@127.0.0.1:1/a/b",                        // bad path
		"mariadb://root@127.0.0.1:1/test?password=" + enc + "&timeout=2s", // password as a parameter
		"bogus://root:" + enc + "@127.0.0.1:1/test",                       // unknown scheme
		"root:" + secret + "@tcp(127.0.0.1:1)/test",                       // a driver DSN, not a URL
	}
	n := int64(0)
	for i, dsn := range dsns {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			t.Parallel()
			var runs []cliResult
			for _, args := range [][]string{
				{"run", "--dsn", dsn, "--try", "-v", "--key", "k", "--", "true"},
				{"run", "--dsn", dsn, "--json", "--timeout", "1s", "--key", "k", "--", "true"},
				{"status", "--dsn", dsn, "--json", "k"},
				{"locks", "--dsn", dsn},
			} {
				runs = append(runs, runCLI(t, nil, args...))
			}
			runs = append(runs, runCLI(t, []string{"KANNUKI_DSN=" + dsn}, "status", "-v", "k"))
			runs = append(runs, runCLI(t, []string{"KANNUKI_DSN=" + dsn}, "run", "--try", "--key", "k", "--", "true"))
			for _, r := range runs {
				if r.code == 0 {
					t.Errorf("DSN %d: a command succeeded with a DSN that should fail", i)
				}
				if leaks(r.stdout+r.stderr, secret) {
					t.Errorf("DSN %d: the output shows the password:\n%s%s", i, r.stdout, r.stderr)
				}
			}
			t.Logf("DSN %d: %s", i, strings.TrimSpace(runs[0].stderr))
		})
		n += 6
	}
	t.Cleanup(func() {
		record(t, Figure{Backend: "kannuki CLI", Counts: map[string]int64{"runs_checked": n, "dsn_forms": int64(len(dsns))}})
	})
	_ = errors.New
}
