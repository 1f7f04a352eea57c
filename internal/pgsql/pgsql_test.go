package pgsql

import (
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

func TestCommentIsSafe(t *testing.T) {
	for _, key := range []string{
		"order/1", "*/ DROP TABLE x; --", "/* nested */", "100%", `back\slash`, "a\nb\x00c\x7f",
		strings.Repeat("é", 300), strings.Repeat("鍵", 150), strings.Repeat("*/", 500), "bad\xffutf8",
	} {
		c := Comment(key)
		body := strings.TrimSuffix(strings.TrimPrefix(c, "/* "), " */")
		if strings.Contains(body, "*/") || strings.Contains(body, "/*") {
			t.Errorf("Comment(%q) = %q: can end or nest the comment", key, c)
		}
		if !utf8.ValidString(c) {
			t.Errorf("Comment(%.20q...) is not valid UTF-8", key)
		}
		for _, r := range body {
			if r < 0x20 || r == 0x7f {
				t.Errorf("Comment(%q) keeps a control character", key)
			}
		}
		if len(c) > maxComment+32 {
			t.Errorf("Comment is %d bytes long", len(c))
		}
	}
	if Comment("a*b") == Comment("a%2Ab") {
		t.Error("distinct keys must give distinct comments")
	}
	if got := NameFromQuery("SELECT 1 " + Comment("order/1")); got != "order/1" {
		t.Errorf("NameFromQuery = %q", got)
	}
}

func TestLockTimeoutCapped(t *testing.T) {
	if got := LockTimeout(30 * 24 * time.Hour); got != "2147483647ms" {
		t.Fatalf("LockTimeout(30 days) = %s, want PostgreSQL's maximum", got)
	}
	if got := LockTimeout(time.Microsecond); got != "1ms" {
		t.Fatalf("LockTimeout(1µs) = %s", got)
	}
}
