package main

import (
	"strings"
	"testing"
)

// A DSN in the Go MySQL driver's form gets the mysql:// URL to use, with
// the password hidden.
func TestGoDriverDSNHint(t *testing.T) {
	for dsn, want := range map[string]string{
		"root@tcp(127.0.0.1:3306)/test":                "mysql://root@127.0.0.1:3306/test",
		"app:s3cr3t@tcp(db:3307)/app?parseTime=true":   "mysql://app:xxxxx@db:3307/app?parseTime=true",
		"app:s3cr3t@unix(/run/mysqld/mysqld.sock)/app": "mysql://app:xxxxx@/app?socket=/run/mysqld/mysqld.sock",
		"root@/test":                         "mysql://root@127.0.0.1:3306/test",
		"app:p@ss:w0rd/x@tcp(127.0.0.1)/app": "mysql://app:xxxxx@127.0.0.1:3306/app",
	} {
		code, out, stderr := invoke(t, nil, "status", "--dsn", dsn, "k")
		if code != exitError || !strings.Contains(stderr, "'"+want+"'") {
			t.Errorf("%s: exit %d, want a hint for %s: %q", dsn, code, want, stderr)
		}
		assertNoSecret(t, "s3cr3t", out, stderr)
		assertNoSecret(t, "w0rd", out, stderr)
		// The suggested URL works as given (with the real password).
		if _, err := parseDSN(strings.Replace(want, "xxxxx", "pw", 1)); err != nil {
			t.Errorf("suggested %s does not parse: %v", want, err)
		}
	}
	if goMySQLHint("postgres://u@h/db") != "" || goMySQLHint("localhost:5432") != "" {
		t.Error("a hint for a DSN that is not the Go MySQL form")
	}
}
