package keys_test

import (
	"testing"

	"github.com/kannuki-go/kannuki/keys"
)

func TestDefinitionKeyHasNameAndScope(t *testing.T) {
	numbering := keys.Define[int64]("invoice_numbers")
	if got := numbering.Key(42); got != "invoice_numbers/42" {
		t.Fatalf("Key = %q", got)
	}
	if got := keys.Define[string]("user").Key("a/b"); got != "user/a/b" {
		t.Fatalf("Key = %q", got)
	}
}

func TestDefineRejectsBadName(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Fatal("Define(\"\") must panic")
		}
	}()
	keys.Define[string]("")
}
