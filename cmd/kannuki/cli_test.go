package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestHelp(t *testing.T) {
	for _, args := range [][]string{
		{"--help"}, {"help"}, {"help", "dsn"}, {"help", "exit-codes"}, {"help", "run"},
		{"run", "--help"}, {"run", "-h"}, {"status", "--help"}, {"locks", "--help"}, {"version", "--help"},
	} {
		code, out, stderr := invoke(t, nil, args...)
		if code != 0 || !strings.Contains(out, "kannuki") || stderr != "" {
			t.Errorf("kannuki %v: exit %d\nstdout: %s\nstderr: %s", args, code, out, stderr)
		}
	}
	_, out, _ := invoke(t, nil, "run", "--help")
	for _, want := range []string{"--key", "--timeout", "--try", "--dsn", "75", "70", "125", "127", "SIGTERM"} {
		if !strings.Contains(out, want) {
			t.Errorf("run --help does not mention %q", want)
		}
	}
}

func TestVersion(t *testing.T) {
	code, out, _ := invoke(t, nil, "version")
	if code != 0 || !strings.HasPrefix(out, "kannuki ") {
		t.Fatalf("version: exit %d: %q", code, out)
	}
}

func TestUsageErrors(t *testing.T) {
	notExec := filepath.Join(t.TempDir(), "script")
	if err := os.WriteFile(notExec, []byte("#!/bin/sh\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	key := uniqueKey(t)
	for _, c := range []struct {
		args []string
		want int
		msg  string
	}{
		{nil, exitError, "Usage"},
		{[]string{"frobnicate"}, exitError, "unknown command"},
		{[]string{"run", "--", "true"}, exitError, "--key is required"},
		{[]string{"run", "--key", key}, exitError, "no command"},
		{[]string{"run", "--key", key, "--try", "--timeout", "5s", "--", "true"}, exitError, "contradict"},
		{[]string{"run", "--key", key, "--timeout", "-1s", "--", "true"}, exitError, "negative"},
		{[]string{"run", "--key", key, "--timeout", "soon", "--", "true"}, exitError, "not a duration"},
		{[]string{"run", "--bogus", "--key", key, "--", "true"}, exitError, "bogus"},
		{[]string{"run", "--key", key, "--dsn", "redis://localhost", "--", "true"}, exitError, "unsupported DSN scheme"},
		{[]string{"run", "--key", key, "--", "kannuki-no-such-command-xyz"}, exitNotFound, "not found"},
		{[]string{"run", "--key", key, "--", notExec}, exitCannotExec, "permission denied"},
		{[]string{"run", "--key", "", "--", "true"}, exitError, "--key is required"},
		{[]string{"run", "--key", strings.Repeat("k", 5000), "--", "true"}, exitError, "invalid key"},
		{[]string{"status"}, exitError, "exactly one KEY"},
		{[]string{"locks", "extra"}, exitError, "unexpected argument"},
		{[]string{"run", "--key", key, "--dsn", "file:///no/such/dir/kannuki", "--", "true"}, exitError, "does not exist"},
	} {
		code, _, stderr := invoke(t, nil, c.args...)
		if code != c.want || !strings.Contains(stderr, c.msg) {
			t.Errorf("kannuki %q: exit %d, want %d with %q\nstderr: %s", c.args, code, c.want, c.msg, stderr)
		}
	}
}

// The file store in a directory named by a file:// DSN, and --prefix.
func TestFileDSNAndPrefix(t *testing.T) {
	dir := t.TempDir()
	dsn := "file://" + dir
	key, f := uniqueKey(t), newFiles(t)
	holder := hold(t, storeCase{dsn: dsn}, f, key, "--prefix", "myapp")
	// Another directory is another set of locks.
	if code, _, stderr := invoke(t, nil, "run", "--try", "--prefix", "myapp", "--key", key, "--", "true"); code != 0 {
		t.Errorf("default directory: exit %d: %s", code, stderr)
	}
	// The same directory and full key conflict; the prefix is part of the key.
	if code, _, _ := invoke(t, []string{"KANNUKI_DSN=" + dsn}, "run", "--try", "--prefix", "myapp", "--key", key, "--", "true"); code != exitNotAcquired {
		t.Errorf("same directory via KANNUKI_DSN: exit %d, want %d", code, exitNotAcquired)
	}
	if code, _, _ := invoke(t, nil, "run", "--dsn", dsn, "--try", "--key", "myapp/"+key, "--", "true"); code != exitNotAcquired {
		t.Errorf("prefix/key spelled out: exit %d, want %d", code, exitNotAcquired)
	}
	if code, _, _ := invoke(t, nil, "run", "--dsn", dsn, "--try", "--key", key, "--", "true"); code != 0 {
		t.Errorf("key without the prefix: exit %d, want 0", code)
	}
	if code, out, _ := invoke(t, nil, "status", "--dsn", dsn, "--prefix", "myapp", key); code != exitHeld || !strings.Contains(out, "myapp/"+key) {
		t.Errorf("status --prefix: exit %d: %s", code, out)
	}
	touch(t, f.gof)
	holder.wait()
}

// A password in a DSN never appears in anything kannuki prints, including
// driver errors, verbose logs and JSON.
func TestPasswordNeverPrinted(t *testing.T) {
	const secret = "s3cr3t"
	dsns := []string{
		"postgres://postgres:" + secret + "@127.0.0.1:1/test",                   // connection refused
		"postgresql://postgres:" + secret + "@127.0.0.1:1/test?sslmode=disable", // connection refused
		"postgres://postgres@127.0.0.1:1/test?password=" + secret,               // password as a parameter
		"postgres://postgres:" + secret + "@127.0.0.1:notaport/test",            // unparsable
		"postgres://postgres:" + secret + "@[::1/test",                          // unparsable
		"mysql://root:" + secret + "@127.0.0.1:1/test",                          // connection refused
		"mysql://root:" + secret + "@127.0.0.1:3306/test",                       // access denied, if MariaDB runs
		"mysql://root:" + secret + "@127.0.0.1:3306/test?tls=bogus",             // driver parameter error
		"mariadb://root:" + secret + "@%zz/test",                                // unparsable
		"mysql://root:s3%2Fcr3t@127.0.0.1:1/test",                               // encoded
	}
	for _, dsn := range dsns {
		want := secret
		if strings.Contains(dsn, "%2F") {
			want = "s3/cr3t"
		}
		for _, args := range [][]string{
			{"run", "--key", "k", "--", "true"},
			{"run", "--json", "-v", "--key", "k", "--", "true"},
			{"status", "k"},
			{"status", "--json", "k"},
			{"locks", "-v"},
		} {
			// By flag and by environment.
			code, out, stderr := invoke(t, nil, append([]string{args[0], "--dsn", dsn}, args[1:]...)...)
			if code != exitError {
				t.Errorf("%v: exit %d, want %d\nstderr: %s", args, code, exitError, stderr)
			}
			assertNoSecret(t, want, out, stderr)
			if want != secret {
				assertNoSecret(t, "s3%2Fcr3t", out, stderr)
			}
			// status --json reports the error as JSON on stdout.
			if !strings.Contains(stderr+out, "kannuki") {
				t.Errorf("%v with %s: no error message: %q %q", args, dsn, out, stderr)
			}
			code, out, stderr = invoke(t, []string{"KANNUKI_DSN=" + dsn}, args...)
			if code != exitError {
				t.Errorf("%v via KANNUKI_DSN: exit %d\nstderr: %s", args, code, stderr)
			}
			assertNoSecret(t, want, out, stderr)
		}
	}
}
