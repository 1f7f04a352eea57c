package main

import (
	"encoding/json"
	"strings"
	"testing"
)

// status --json and locks --json report errors as JSON on stdout, with
// run --json's fields, and print nothing else.
func TestJSONErrors(t *testing.T) {
	const unreachable = "postgres://postgres@127.0.0.1:1/test?sslmode=disable"
	for _, c := range []struct {
		args []string
		key  string
	}{
		{[]string{"status", "--json", "--dsn", unreachable, "k"}, "k"},
		{[]string{"status", "--json", "--prefix", "app", "--dsn", unreachable, "k"}, "app/k"},
		{[]string{"status", "--json", "--dsn", "redis://x", "k"}, "k"},
		{[]string{"status", "--json", "--dsn", "file:///no/such/dir", "k"}, "k"},
		{[]string{"status", "--json"}, ""},
		{[]string{"locks", "--json", "--dsn", unreachable}, ""},
		{[]string{"locks", "--json", "extra"}, ""},
	} {
		code, out, stderr := invoke(t, nil, c.args...)
		var e struct {
			Key      *string `json:"key"`
			Result   string  `json:"result"`
			ExitCode int     `json:"exit_code"`
			Error    string  `json:"error"`
		}
		if err := json.Unmarshal([]byte(out), &e); err != nil {
			t.Errorf("%q: stdout is not JSON: %v: %q", c.args, err, out)
			continue
		}
		if code != exitError || e.Result != "error" || e.ExitCode != exitError || !strings.HasPrefix(e.Error, "kannuki") || stderr != "" {
			t.Errorf("%q: exit %d, %+v, stderr %q", c.args, code, e, stderr)
		}
		if c.key != "" && (e.Key == nil || *e.Key != c.key) {
			t.Errorf("%q: key %v, want %q", c.args, e.Key, c.key)
		}
	}
	// run --json reports its usage errors in its result line too.
	code, _, stderr := invoke(t, nil, "run", "--json", "--", "true")
	if r := lastJSON(t, stderr); code != exitError || r.Result != "error" || !strings.Contains(r.Error, "--key is required") {
		t.Errorf("run --json without --key: exit %d, %+v", code, r)
	}
}
