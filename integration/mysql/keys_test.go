package mysql

import (
	"context"
	"errors"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/kannuki-go/kannuki/keys"
	"github.com/kannuki-go/kannuki/store"

	"github.com/kannuki-go/kannuki"
	"github.com/kannuki-go/kannuki/kannukimysql"
)

// TestOddKeys: keys full of SQL syntax lock exactly the name the key
// scheme derived (checked with the name as a driver-escaped argument),
// exclude each other's holders, stay distinct where a naive escaping would
// merge them, and never change the statement (a canary table survives).
func TestOddKeys(t *testing.T) {
	forEachVariant(t, func(t *testing.T, v variant) {
		for _, prep := range []bool{true, false} {
			name := "prepared"
			if !prep {
				name = "text"
			}
			t.Run(name, func(t *testing.T) {
				a, db := newBackend(t, v, 40, kannukimysql.Options{DisablePrepared: !prep})
				b, _ := newBackend(t, v, 4, kannukimysql.Options{DisablePrepared: !prep})
				obs := newObserver(t)
				canary := "kannuki_it_canary_" + randSuffix()
				ctx, cancel := guard()
				defer cancel()
				if _, err := db.ExecContext(ctx, "CREATE TABLE "+canary+" (id INT)"); err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { _, _ = db.Exec("DROP TABLE IF EXISTS " + canary) })

				suffix := randSuffix()
				odd := []string{
					"it's", "it''s", `it\'s`, `it\\'s`, `back\slash`, `back\\slash`, `"double"`,
					"'); DROP TABLE " + canary + "; --", "x' OR '1'='1", "*/ SELECT 1; /*", "-- comment", "#hash",
					"?", "$1", "%s", "\\0", "\\Z", "../../etc/passwd", "tab\there", "new\nline",
					"ключ", "鍵/🔒", "e\u0301", "\u00e9", "Order/1", "order/1",
					strings.Repeat("long", 40),
					strings.Repeat("🔒", 100),
				}
				names := make([]store.Key, len(odd))
				leases := make([]store.Lease, len(odd))
				for i, s := range odd {
					k, err := keys.Ruby{}.Derive("kmy-odd-"+suffix, s)
					if err != nil {
						t.Fatalf("derive %q: %v", s, err)
					}
					names[i] = k
					if n := utf8.RuneCountInString(k.Name); n > 64 {
						t.Fatalf("name %q has %d characters", k.Name, n)
					}
					l, err := a.Acquire(ctx, k, exclusive(0))
					if err != nil {
						t.Fatalf("Acquire(%q): %v", s, err)
					}
					leases[i] = l
				}
				// All held at once: distinct names, none merged with
				// another (MariaDB compares names byte for byte).
				for i, k := range names {
					if obs.owner(t, k) == 0 {
						t.Fatalf("%q: the server shows no holder of %q", odd[i], k.Name)
					}
					if held, err := b.Held(ctx, k); err != nil || !held {
						t.Fatalf("Held(%q): %v %v", odd[i], held, err)
					}
					if _, err := b.Acquire(ctx, k, exclusive(0)); !errors.Is(err, kannuki.ErrNotAcquired) {
						t.Fatalf("second holder of %q: %v, want ErrNotAcquired", odd[i], err)
					}
				}
				for i, l := range leases {
					if err := l.Release(ctx); err != nil {
						t.Fatalf("Release(%q): %v", odd[i], err)
					}
					if o := obs.owner(t, names[i]); o != 0 {
						t.Fatalf("%q held by %d after Release", odd[i], o)
					}
				}
				if _, err := db.ExecContext(ctx, "SELECT COUNT(*) FROM "+canary); err != nil {
					t.Fatalf("canary table: %v", err)
				}
			})
		}
	})
}

// TestBadKeys: names the servers cannot take fail with ErrInvalidKey
// before any statement; so does shared mode with ErrUnsupported.
func TestBadKeys(t *testing.T) {
	b, _ := newBackend(t, variants[0], 2, kannukimysql.Options{})
	ctx, cancel := guard()
	defer cancel()
	long, err := keys.Advisory{}.Derive("", strings.Repeat("x", 65))
	if err != nil {
		t.Fatal(err)
	}
	bad := map[string]store.Key{
		"empty":           {String: "", Name: ""},
		"NUL":             {String: "a\x00b", Name: "a\x00b"},
		"invalid UTF-8":   {String: "\xff", Name: "\xff"},
		"65 characters":   long,
		"over 192 bytes":  {String: "many", Name: strings.Repeat("🔒", 49)},
		"1 MiB":           {String: "huge", Name: strings.Repeat("k", 1<<20)},
		"65 multibyte ch": {String: "é", Name: strings.Repeat("é", 65)},
	}
	for what, k := range bad {
		if _, err := b.Acquire(ctx, k, exclusive(0)); !errors.Is(err, kannuki.ErrInvalidKey) {
			t.Errorf("Acquire with %s name: %v, want ErrInvalidKey", what, err)
		}
		if _, err := b.Held(ctx, k); !errors.Is(err, kannuki.ErrInvalidKey) {
			t.Errorf("Held with %s name: %v, want ErrInvalidKey", what, err)
		}
	}
	// 64 characters of 3 bytes is fine on both servers.
	ok := store.Key{String: "ok", Name: strings.Repeat("é", 63) + randSuffix()[:1]}
	l, err := b.Acquire(ctx, ok, exclusive(0))
	if err != nil {
		t.Fatalf("64-character name: %v", err)
	}
	mustRelease(t, l)
}

// TestLocks: the listing shows a waiter with its name and the holder of
// that name.
func TestLocks(t *testing.T) {
	v := variants[0]
	holder, _ := newBackend(t, v, 2, kannukimysql.Options{})
	b, _ := newBackend(t, v, 2, kannukimysql.Options{})
	k := uniqueKey(t, "it's/ключ")
	l := mustAcquire(t, holder, k)
	defer mustRelease(t, l)
	obs := newObserver(t)
	holderID := obs.owner(t, k)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, _ = b.Acquire(ctx, k, exclusive(store.WaitForever))
	}()
	defer func() { cancel(); <-done }()
	waiterID := obs.waitWaiters(t, k, 1)[0].id

	gctx, gcancel := guard()
	defer gcancel()
	infos, err := b.Locks(gctx)
	if err != nil {
		t.Fatal(err)
	}
	var sawHolder, sawWaiter bool
	for _, li := range infos {
		if li.Name != k.Name {
			continue
		}
		switch {
		case li.Granted && li.PID == holderID:
			sawHolder = true
		case !li.Granted && li.PID == waiterID:
			sawWaiter = true
			if li.Since.IsZero() {
				t.Errorf("waiter without Since: %+v", li)
			}
		}
		if li.Mode != store.ModeExclusive {
			t.Errorf("mode %v", li.Mode)
		}
	}
	if !sawHolder || !sawWaiter {
		t.Fatalf("holder seen %v, waiter seen %v in %+v", sawHolder, sawWaiter, infos)
	}
}
