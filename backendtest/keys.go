package backendtest

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/kannuki-go/kannuki/keys"

	"github.com/kannuki-go/kannuki"
)

// invalidKeys are rejected by the Locker before the backend sees them.
var invalidKeys = []struct{ name, key string }{
	{"Empty", ""},
	{"OneMiB", strings.Repeat("k", 1<<20)},
	{"NUL", "a\x00b"},
	{"InvalidUTF8", "bad\xff\xfekey"},
}

// oddKeys are valid keys that trip naive SQL, comment, path or name
// handling. Each must lock and exclude like any other key.
var oddKeys = []struct{ name, key string }{
	{"Quotes", `it's "quoted" ` + "`x`"},
	{"CommentEnd", "*/ SELECT 1; /*"},
	{"LineComment", "-- not a comment"},
	{"Injection", "'); DROP TABLE x; --"},
	{"Placeholders", "? $1 :name %s %% _ \\"},
	{"Unicode", "ключ/鍵/🔒/é"},
	{"Whitespace", " tab\tnewline\nreturn\r "},
	{"PathTraversal", "../../../../etc/passwd"},
	{"Slashes", "/a//b/"},
	{"Long100", strings.Repeat("long-key-", 11) + "x"},
	{"LongMultibyte", strings.Repeat("é", 60)},
	{"Max", ""}, // filled in below: the longest key the Locker accepts
}

// testKeys: invalid keys fail with ErrInvalidKey everywhere a key is taken,
// without running fn or locking anything; odd but valid keys lock, exclude
// and release correctly, and distinct keys a naive encoding would merge
// stay distinct.
func (s *suite) testKeys(t *testing.T) {
	b := s.h.New(t)
	t.Run("Invalid", func(t *testing.T) {
		l := s.newLocker(t, b, "", 0)
		ctx, cancel := guardCtx()
		defer cancel()
		for _, c := range invalidKeys {
			ran := false
			fn := func(context.Context) error { ran = true; return nil }
			check := func(call string, err error) {
				t.Helper()
				if !errors.Is(err, kannuki.ErrInvalidKey) {
					t.Errorf("%s with key %s: error %v does not match ErrInvalidKey", call, c.name, err)
				} else {
					checkPrefix(t, call, err)
				}
			}
			check("WithLock", l.WithLock(ctx, c.key, fn))
			ok, err := l.TryLock(ctx, c.key, fn)
			check("TryLock", err)
			if ok {
				t.Errorf("TryLock with key %s reported ok", c.name)
			}
			check("Lock", l.WithLock(ctx, c.key, fn))
			h, err := l.Acquire(ctx, c.key)
			check("Acquire", err)
			if h != nil {
				_ = h.Release(ctx)
			}
			_, err = l.Held(ctx, c.key)
			check("Held", err)
			if ran {
				t.Errorf("fn ran for the invalid key %s", c.name)
			}
		}
	})

	t.Run("Odd", func(t *testing.T) {
		prefix := "kannuki-backendtest-" + randSuffix()
		la := s.newLocker(t, b, prefix, 0)
		lb := s.newLocker(t, s.h.New(t), prefix, 0)
		ctx, cancel := guardCtx()
		defer cancel()
		for _, c := range oddKeys {
			key := c.key
			if c.name == "Max" {
				key = strings.Repeat("m", keys.MaxKeyLen-len(prefix)-1)
			}
			k := lockerKey(t, la, key)
			h, err := la.Acquire(ctx, key)
			if err != nil {
				t.Errorf("Acquire(%s): %v", c.name, err)
				continue
			}
			s.expectHeld(t, k, c.name+" after Acquire")
			if held, err := lb.Held(ctx, key); err != nil || !held {
				t.Errorf("Held(%s) from another client = %v, %v; want true", c.name, held, err)
			}
			h2, err := lb.Acquire(ctx, key, kannuki.Timeout(0))
			if err == nil {
				_ = h2.Release(ctx)
				t.Errorf("TryAcquire(%s) by another client succeeded while held", c.name)
			} else if !errors.Is(err, kannuki.ErrNotAcquired) {
				t.Errorf("TryAcquire(%s) by another client: error %v does not match ErrNotAcquired", c.name, err)
			}
			if err := h.Release(ctx); err != nil {
				t.Errorf("Release(%s): %v", c.name, err)
			}
			s.expectFree(t, k, c.name+" after Release")
			ok, err := lb.TryLock(ctx, key, func(context.Context) error { return nil })
			if !ok || err != nil {
				t.Errorf("TryLock(%s) on the released key = %v, %v; want true, nil", c.name, ok, err)
			}
		}
	})

	// Keys that an escaping or file-naming scheme could fold together
	// (MySQL folds the case of names, so case is not among them). The
	// keys of a group are held at once, and groups are small: a database
	// backend pins a pooled connection per held lock.
	t.Run("Distinct", func(t *testing.T) {
		l := s.newLocker(t, b, "", 0)
		ctx, cancel := guardCtx()
		defer cancel()
		long := strings.Repeat("shared-prefix-", 8)
		groups := [][]string{
			{"a/b", "a_b", "a%2Fb"},
			{"a\\b", "a b", "a:b"},
			{"a.b", "a..b", "a%b"},
			{"x*/y", "x%2A/y", "x*%2Fy"},
			{long + "1", long + "2"}, // same first 31 code points: names differ by hash
			{"1234", "01234", " 1234"},
		}
		for _, keys := range groups {
			var hs []*kannuki.Handle
			for _, key := range keys {
				h, err := l.Acquire(ctx, key, kannuki.Timeout(0))
				if err != nil {
					t.Errorf("TryAcquire(%q) while holding %q: %v", key, keys[:len(hs)], err)
					continue
				}
				hs = append(hs, h)
			}
			for _, h := range hs {
				if err := h.Release(ctx); err != nil {
					t.Errorf("Release(%q): %v", h.Key(), err)
				}
			}
			for _, key := range keys {
				s.expectFree(t, lockerKey(t, l, key), "after releasing the distinct keys")
			}
		}
	})
}
