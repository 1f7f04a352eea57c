package main

import (
	"regexp"
	"strings"
	"testing"

	"github.com/kannuki-go/kannuki/internal/saidonce"
)

// No message of the CLI names a Go package: its users run a command, not
// a Go program.
func TestMessagesNameNoGoPackage(t *testing.T) {
	forbidden := regexp.MustCompile(`go-sql-driver|github\.com|golang\.org|database/sql|pgconn|pgx|kannuki(pg|mysql|file|mem)\b|(^|[^a-z])(sql|driver|exec|fork/exec): `)
	notExec := t.TempDir() + "/script"
	touch(t, notExec)
	for _, args := range [][]string{
		{"help"}, {"help", "dsn"}, {"help", "exit-codes"}, {"run", "--help"}, {"status", "--help"}, {"locks", "--help"},
		{"run", "--key", "k", "--", "kannuki-no-such-command-xyz"},
		{"run", "--key", "k", "--", notExec},
		{"run", "--dsn", "postgres://postgres@127.0.0.1:1/test", "--key", "k", "--", "true"},
		{"run", "--dsn", "postgres://postgres@127.0.0.1:notaport/test", "--key", "k", "--", "true"},
		{"run", "--dsn", "mysql://root@127.0.0.1:1/test", "--key", "k", "--", "true"},
		{"run", "--dsn", "mysql://root@127.0.0.1:3306/test?tls=bogus", "--key", "k", "--", "true"},
		{"run", "--dsn", "mysql://nosuchuser:pw@127.0.0.1:3306/test", "--key", "k", "--", "true"},
		{"status", "--dsn", "root@tcp(127.0.0.1:3306)/test", "k"},
		{"status", "--dsn", "file:///no/such/dir", "k"},
		{"locks", "--dsn", "postgres://postgres@127.0.0.1:1/test"},
	} {
		_, out, stderr := invoke(t, nil, args...)
		if m := forbidden.FindString(out + stderr); m != "" {
			t.Errorf("%q names a Go package (%q):\nstdout: %s\nstderr: %s", args, m, out, stderr)
		}
		// Every message line says each thing once (issue 15).
		for _, line := range strings.Split(stderr, "\n") {
			if strings.HasPrefix(line, "kannuki") && strings.Contains(line, ": ") {
				if p := saidonce.Repeats(line); p != "" {
					t.Errorf("%q: message %q: %s", args, line, p)
				}
			}
		}
	}
}
