package main

import (
	"regexp"
	"strings"
	"testing"
)

// Control characters in a key never reach the terminal raw: "locks" and
// "status" show them escaped.
func TestControlCharactersEscaped(t *testing.T) {
	forEachStore(t, func(t *testing.T, s storeCase) {
		key, f := uniqueKey(t)+"/\x1b[31mred\nline\u202e", newFiles(t)
		holder := hold(t, s, f, key)
		// A waiter makes the lock visible on MySQL without a listing of held locks.
		waiter := start(t, f.env(), append([]string{"run"}, s.args("-v", "--key", key, "--", "true")...)...)
		awaitWaiting(t, s, waiter, key)
		raw := regexp.MustCompile("[\x00-\x08\x0b-\x1f\x7f\u202e]")
		for _, args := range [][]string{{"locks"}, {"status", key}} {
			_, out, stderr := invoke(t, nil, append([]string{args[0]}, s.args(args[1:]...)...)...)
			if raw.MatchString(out) {
				t.Errorf("%s prints control characters raw: %q", args[0], out)
			}
			// The file store names the lock by the key itself;
			// PostgreSQL's comment already %-encodes control bytes.
			if s.name == "file" && !strings.Contains(out, `\x1b[31mred\nline\u202e`) {
				t.Errorf("%s does not show the key escaped: %q (stderr %q)", args[0], out, stderr)
			}
		}
		touch(t, f.gof)
		holder.wait()
		waiter.wait()
	})
}

func TestPrintable(t *testing.T) {
	for in, want := range map[string]string{
		"plain/key-1":     "plain/key-1",
		"ключ/日本":         "ключ/日本",
		"a\nb\rc\td":      `a\nb\rc\td`,
		"\x1b[2J\x7f":     `\x1b[2J\x7f`,
		"\u0085\u2028":    `\u0085\u2028`,
		"rtl\u202eevil":   `rtl\u202eevil`,
		"bad\xffutf8":     `bad\xffutf8`,
		`back\slash"quo"`: `back\slash"quo"`,
	} {
		if got := printable(in); got != want {
			t.Errorf("printable(%q) = %q, want %q", in, got, want)
		}
	}
}
