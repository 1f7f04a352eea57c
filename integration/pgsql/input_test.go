package pgsql

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/kannuki-go/kannuki/keys"
	"github.com/kannuki-go/kannuki/store"

	"github.com/kannuki-go/kannuki"
	"github.com/kannuki-go/kannuki/kannukipg"
)

// TestBadInput: keys the key layer rejects fail with ErrInvalidKey before
// any SQL; keys it accepts, however hostile, lock correctly and never reach
// the SQL outside a sanitized comment; malformed requests fail cleanly.
func TestBadInput(t *testing.T) {
	forEachDriver(t, func(t *testing.T, d driver) {
		b, db := newBackend(t, d, 6)
		obs := newObserver(t)
		var r [6]byte
		_, _ = rand.Read(r[:])
		sentinel := "kannuki_it_sentinel_" + hex.EncodeToString(r[:])
		if _, err := obs.db.Exec("CREATE TABLE " + sentinel + " (x int)"); err != nil {
			t.Fatal(err)
		}
		defer obs.db.Exec("DROP TABLE IF EXISTS " + sentinel)

		t.Run("rejected", func(t *testing.T) {
			lk := kannuki.New(b, kannuki.Options{})
			ran := false
			fn := func(context.Context) error { ran = true; return nil }
			for name, key := range map[string]string{
				"empty":        "",
				"1MiB":         strings.Repeat("k", 1<<20),
				"NUL":          "a\x00b",
				"invalid-utf8": "a\xff\xfeb",
			} {
				if err := lk.WithLock(ctxT(t, 10*time.Second), key, fn); !errors.Is(err, kannuki.ErrInvalidKey) {
					t.Errorf("%s key: %v; want ErrInvalidKey", name, err)
				}
			}
			if err := lk.WithLock(ctxT(t, 10*time.Second), "ok", nil); !errors.Is(err, kannuki.ErrInvalidArgument) {
				t.Errorf("nil fn: %v; want ErrInvalidArgument", err)
			}
			if err := lk.WithLock(ctxT(t, 10*time.Second), "ok", fn, kannuki.Timeout(-time.Second)); !errors.Is(err, kannuki.ErrInvalidArgument) {
				t.Errorf("negative timeout: %v; want ErrInvalidArgument", err)
			}
			if ran {
				t.Error("fn ran for a rejected call")
			}
		})

		t.Run("accepted", func(t *testing.T) {
			other, _ := newBackend(t, d, 2)
			for _, key := range []string{
				"*/ DROP TABLE " + sentinel + "; --",
				"'; DROP TABLE " + sentinel + "; SELECT '",
				`"quoted" 'single' $$dollar$$ $tag$`,
				"-- line comment",
				"/* nested /* comment",
				`back\slash %2A percent`,
				"tab\tnew\nline\r\x7f",
				"日本語/キー/🔒",
				strings.Repeat("é", 300),            // 600 bytes: the comment is cut at a character boundary
				strings.Repeat("*/", 2000),          // 4000 bytes, all escaped
				strings.Repeat("x", keys.MaxKeyLen), // the longest key
			} {
				k, err := keys.Ruby{}.Derive("", key)
				if err != nil {
					t.Fatalf("key %.40q: %v", key, err)
				}
				k.ID ^= int64(r[0])<<8 | int64(r[1]) // keep ids of this run to itself
				ctx := ctxT(t, 30*time.Second)
				l, err := b.Acquire(ctx, k, store.Request{})
				if err != nil {
					t.Fatalf("key %.40q: Acquire: %v", key, err)
				}
				if n := obs.held(t, k); n != 1 {
					t.Fatalf("key %.40q: %d holders", key, n)
				}
				// The waiting statement carries the comment too.
				if _, err := other.Acquire(ctx, k, store.Request{Wait: 30 * time.Millisecond}); !errors.Is(err, kannuki.ErrNotAcquired) {
					t.Fatalf("key %.40q: timed wait on a held key: %v", key, err)
				}
				if held, err := b.Held(ctx, k); err != nil || !held {
					t.Fatalf("key %.40q: Held = %v, %v", key, held, err)
				}
				if err := l.(store.Checker).Check(ctx); err != nil {
					t.Fatalf("key %.40q: Check: %v", key, err)
				}
				if _, err := b.Locks(ctx); err != nil {
					t.Fatalf("key %.40q: Locks: %v", key, err)
				}
				mustRelease(t, l)
				if n := obs.held(t, k); n != 0 {
					t.Fatalf("key %.40q: %d holders after release", key, n)
				}
			}
			var exists bool
			if err := obs.db.QueryRow("SELECT to_regclass($1) IS NOT NULL", sentinel).Scan(&exists); err != nil || !exists {
				t.Fatalf("sentinel table gone (%v): a key reached the SQL", err)
			}
		})

		t.Run("hand-built", func(t *testing.T) {
			// A Backend may get a Key built without the key layer: its
			// String is only ever a comment, made safe here too.
			var id [8]byte
			_, _ = rand.Read(id[:])
			k := store.Key{
				String: "nul\x00 bad\xff\xfe utf8 */ " + strings.Repeat("ü", 1<<19), // 1 MiB
				ID:     int64(id[0])<<40 | int64(id[1])<<32 | int64(id[2])<<24 | int64(id[3])<<8 | int64(id[4]),
			}
			l := mustAcquire(t, b, k, store.Request{})
			if _, err := b.Acquire(ctxT(t, 10*time.Second), k, store.Request{Wait: 20 * time.Millisecond}); !errors.Is(err, kannuki.ErrNotAcquired) {
				t.Fatalf("timed wait: %v", err)
			}
			if err := l.(store.Checker).Check(ctxT(t, 10*time.Second)); err != nil {
				t.Fatalf("Check: %v", err)
			}
			mustRelease(t, l)
		})

		t.Run("requests", func(t *testing.T) {
			k := uniqueKey(t)
			if _, err := b.Acquire(ctxT(t, 10*time.Second), k, store.Request{Mode: store.Mode(7)}); !errors.Is(err, kannuki.ErrInvalidArgument) {
				t.Fatalf("unknown mode: %v", err)
			}
			//lint:ignore SA1012 a nil context is the bad input under test
			if _, err := b.Acquire(nil, k, store.Request{}); !errors.Is(err, kannuki.ErrInvalidArgument) {
				t.Fatalf("nil context: %v", err)
			}
			var nb *kannukipg.Backend
			if _, err := nb.Acquire(ctxT(t, 10*time.Second), k, store.Request{}); !errors.Is(err, kannuki.ErrInvalidArgument) {
				t.Fatalf("nil Backend: %v", err)
			}
			if _, err := kannukipg.New(nil, kannukipg.Options{}).Held(ctxT(t, 10*time.Second), k); !errors.Is(err, kannuki.ErrInvalidArgument) {
				t.Fatalf("nil *sql.DB: %v", err)
			}
		})
		assertPoolClean(t, db)
	})
}

// TestLocks: the listing shows holders and waiters of this database with
// their key (from the statement comment), mode, pid and start time.
func TestLocks(t *testing.T) {
	forEachDriver(t, func(t *testing.T, d driver) {
		b, _ := newBackend(t, d, 4)
		other, _ := newBackend(t, d, 2)
		k := uniqueKey(t)
		find := func(granted bool) (store.LockInfo, bool) {
			infos, err := b.Locks(ctxT(t, 10*time.Second))
			if err != nil {
				t.Fatal(err)
			}
			for _, li := range infos {
				if li.ID == k.ID && li.Granted == granted {
					return li, true
				}
			}
			return store.LockInfo{}, false
		}
		l := mustAcquire(t, b, k, store.Request{Mode: store.ModeShared})
		defer mustRelease(t, l)
		if err := l.(store.Checker).Check(ctxT(t, 10*time.Second)); err != nil {
			t.Fatal(err)
		}
		li, ok := find(true)
		if !ok {
			t.Fatal("held lock not listed")
		}
		if li.Name != commentName(k) || li.Mode != store.ModeShared || li.PID == 0 || li.Since.IsZero() {
			t.Fatalf("held lock listed as %+v", li)
		}
		errc := make(chan error, 1)
		go func() {
			_, err := other.Acquire(ctxT(t, 30*time.Second), k, store.Request{Wait: 500 * time.Millisecond})
			errc <- err
		}()
		var w store.LockInfo
		eventually(t, 10*time.Second, "the waiter to be listed", func() bool { w, ok = find(false); return ok })
		if w.Name != commentName(k) || w.Mode != store.ModeExclusive || w.PID == li.PID {
			t.Fatalf("waiter listed as %+v", w)
		}
		if err := <-errc; !errors.Is(err, kannuki.ErrNotAcquired) {
			t.Fatal(err)
		}
	})
}
