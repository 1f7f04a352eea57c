package keys_test

import (
	"crypto/md5"
	"errors"
	"math/big"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/kannuki-go/kannuki/keys"

	"github.com/kannuki-go/kannuki"
)

// Vectors from KEYS.md; they must match the Ruby gem exactly.
func TestRubyKeysVectors(t *testing.T) {
	for _, tc := range []struct {
		prefix, key, name string
		id                int64
	}{
		{"", "my_lock", "my_lock", 9077135811427830419},
		{"myapp", "my_lock", "myapp/my_lock", 3069514438436405984},
		{"", "myapp/my_lock", "myapp/my_lock", 3069514438436405984},
		{"", "order_processing/123", "order_processing/123", 5479098526224546395},
		{"", strings.Repeat("a", 100), "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa:36a92cc94a9e0fa21f625f8bfb007adf", 7057287834259278959},
	} {
		k, err := keys.Ruby{}.Derive(tc.prefix, tc.key)
		if err != nil {
			t.Fatalf("Derive(%q, %q): %v", tc.prefix, tc.key, err)
		}
		if k.Name != tc.name || k.ID != tc.id || k.Pair {
			t.Errorf("Derive(%q, %q) = name %q id %d, want %q %d", tc.prefix, tc.key, k.Name, k.ID, tc.name, tc.id)
		}
	}
	// The empty base's id, for the record; Kannuki rejects the empty key.
	if got := keys.RubyID(""); got != 1277653728798287499 {
		t.Errorf("RubyID(\"\") = %d", got)
	}
	if c, o := keys.ClassObjID(9077135811427830419); c != 2113435373 || o != 2183269011 {
		t.Errorf("ClassObjID(my_lock) = %d/%d, want 2113435373/2183269011", c, o)
	}
}

func TestNormalizeNameCountsCodePoints(t *testing.T) {
	base := strings.Repeat("鍵", 30) // 90 bytes, 30 code points
	name := keys.NormalizeName(base + "xyz")
	head, _, _ := strings.Cut(name, ":")
	if utf8.RuneCountInString(head) != 31 || !utf8.ValidString(name) {
		t.Fatalf("head %q: want 31 code points of the base", head)
	}
	if len(keys.NormalizeName(strings.Repeat("b", 64))) != 64 {
		t.Fatal("a 64-byte base must stay as it is")
	}
}

func TestAdvisoryLockKeys(t *testing.T) {
	k, err := keys.Advisory{}.Derive("", "test")
	if err != nil || !k.Pair || k.K1 != 1484750348 || k.K2 != 0 || k.Name != "test" {
		t.Fatalf("got %+v, %v; want pair (1484750348, 0)", k, err)
	}
	k, _ = keys.Advisory{Namespace: 7}.Derive("", "test")
	if k.K2 != 7 {
		t.Fatalf("namespace not used: %+v", k)
	}
}

func TestRawKeys(t *testing.T) {
	k, err := keys.Raw{}.Derive("", "4242")
	if err != nil || k.ID != 4242 || k.Pair {
		t.Fatalf("got %+v, %v", k, err)
	}
	k, err = keys.Raw{}.Derive("", "-1,2")
	if err != nil || !k.Pair || k.K1 != -1 || k.K2 != 2 {
		t.Fatalf("got %+v, %v", k, err)
	}
	for _, bad := range []string{"x", "1,", "99999999999,1", "1.5", ""} {
		if _, err := (keys.Raw{}).Derive("", bad); !errors.Is(err, kannuki.ErrInvalidKey) {
			t.Errorf("Derive(%q) = %v, want ErrInvalidKey", bad, err)
		}
	}
	if _, err := (keys.Raw{}).Derive("app", "1"); !errors.Is(err, kannuki.ErrInvalidKey) {
		t.Errorf("a prefix with raw ids must be rejected, got %v", err)
	}
}

func TestInvalidKeys(t *testing.T) {
	for name, key := range map[string]string{
		"empty":        "",
		"huge":         strings.Repeat("k", 1<<20),
		"nul":          "a\x00b",
		"invalid utf8": "a\xffb",
	} {
		_, err := keys.Ruby{}.Derive("", key)
		var ke *keys.Error
		if !errors.Is(err, kannuki.ErrInvalidKey) || !errors.As(err, &ke) || !strings.HasPrefix(err.Error(), "kannuki: ") {
			t.Errorf("%s: got %v, want a kannuki KeyError", name, err)
		}
		if len(err.Error()) > 200 {
			t.Errorf("%s: error message should not echo a huge key: %d bytes", name, len(err.Error()))
		}
	}
	if _, err := (keys.Ruby{}).Derive("bad\x00prefix", "k"); !errors.Is(err, kannuki.ErrInvalidKey) {
		t.Errorf("bad prefix: %v", err)
	}
	// Odd but valid keys are accepted; they never reach SQL text as such.
	for _, key := range []string{"'; DROP TABLE x; --", "*/", "--", `"quoted"`, "鍵/１２３", "../../etc/passwd"} {
		if _, err := (keys.Ruby{}).Derive("", key); err != nil {
			t.Errorf("Derive(%q): %v", key, err)
		}
	}
}

func FuzzRubyKeys(f *testing.F) {
	for _, s := range []string{"my_lock", "order_processing/123", strings.Repeat("a", 100), "鍵", "*/--"} {
		f.Add("", s)
		f.Add("app", s)
	}
	f.Fuzz(func(t *testing.T, prefix, key string) {
		k1, err1 := keys.Ruby{}.Derive(prefix, key)
		k2, err2 := keys.Ruby{}.Derive(prefix, key)
		if (err1 == nil) != (err2 == nil) || k1 != k2 {
			t.Fatal("derivation is not deterministic")
		}
		if err1 != nil {
			if !errors.Is(err1, kannuki.ErrInvalidKey) {
				t.Fatalf("unexpected error kind: %v", err1)
			}
			return
		}
		if k1.ID < 0 || len(k1.Name) > 64 && len(k1.String) <= 64 || !utf8.ValidString(k1.Name) {
			t.Fatalf("bad key %+v", k1)
		}
		if len(k1.String) > 64 && len(k1.Name) > 31*4+33 {
			t.Fatalf("hashed name too long: %q", k1.Name)
		}
		if k1.ID != keys.RubyID(k1.Name) {
			t.Fatal("id not derived from the name")
		}
	})
}

// FuzzRubyIDMatchesBigInt checks the fast modular reduction against the
// plain big-integer definition of KEYS.md.
func FuzzRubyIDMatchesBigInt(f *testing.F) {
	for _, s := range []string{"", "my_lock", "order_processing/123", "\xff\xff"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		sum := md5.Sum([]byte(name))
		v := new(big.Int).SetBytes(sum[:])
		want := v.Mod(v, new(big.Int).SetUint64(1<<63-1)).Int64()
		if got := keys.RubyID(name); got != want {
			t.Fatalf("RubyID(%q) = %d, want %d", name, got, want)
		}
	})
}
