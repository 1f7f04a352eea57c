package main

import (
	"strings"
	"testing"
	"time"
)

func TestParseDSN(t *testing.T) {
	for _, c := range []struct {
		dsn   string
		kind  string
		check func(t *testing.T, tg *target)
	}{
		{"", kindFile, func(t *testing.T, tg *target) {
			if tg.dir != "" {
				t.Errorf("dir %q", tg.dir)
			}
		}},
		{"file:///var/lock/kannuki", kindFile, func(t *testing.T, tg *target) {
			if tg.dir != "/var/lock/kannuki" {
				t.Errorf("dir %q", tg.dir)
			}
		}},
		{"file:/var/lock/kannuki", kindFile, func(t *testing.T, tg *target) {
			if tg.dir != "/var/lock/kannuki" {
				t.Errorf("dir %q", tg.dir)
			}
		}},
		{"postgres://app:p%40ss@db.example:6432/app?sslmode=require", kindPostgres, func(t *testing.T, tg *target) {
			for _, want := range []string{"app:p%40ss@db.example:6432/app", "sslmode=require", "application_name=kannuki", "connect_timeout=10"} {
				if !strings.Contains(tg.pgURL, want) {
					t.Errorf("pgURL %q lacks %q", tg.pgURL, want)
				}
			}
			if strings.Contains(tg.shown, "p%40ss") || !strings.Contains(tg.shown, "app:xxxxx@db.example") {
				t.Errorf("shown %q", tg.shown)
			}
		}},
		{"postgresql://h/db?application_name=nightly&connect_timeout=3", kindPostgres, func(t *testing.T, tg *target) {
			if !strings.Contains(tg.pgURL, "application_name=nightly") || !strings.Contains(tg.pgURL, "connect_timeout=3") {
				t.Errorf("pgURL %q overrode the user's parameters", tg.pgURL)
			}
		}},
		{"mysql://app:p%40ss%2Fw:rd@db.example:3307/app?tls=skip-verify&readTimeout=5s&sql_mode=ANSI", kindMySQL, func(t *testing.T, tg *target) {
			m := tg.my
			if m.User != "app" || m.Passwd != "p@ss/w:rd" || m.Net != "tcp" || m.Addr != "db.example:3307" || m.DBName != "app" {
				t.Errorf("config %+v", m)
			}
			if m.ReadTimeout != 5*time.Second || m.TLSConfig != "skip-verify" || m.Params["sql_mode"] != "ANSI" {
				t.Errorf("parameters not passed: %+v", m)
			}
			if m.Timeout != dialTimeout || !m.InterpolateParams {
				t.Errorf("defaults not set: timeout %s interpolate %v", m.Timeout, m.InterpolateParams)
			}
			if strings.Contains(tg.shown, "p%40ss") || !strings.Contains(tg.shown, "app:xxxxx@db.example") {
				t.Errorf("shown %q", tg.shown)
			}
		}},
		{"mariadb://root@/test", kindMySQL, func(t *testing.T, tg *target) {
			if tg.my.Addr != "127.0.0.1:3306" || tg.my.User != "root" || tg.my.Passwd != "" || tg.my.DBName != "test" {
				t.Errorf("config %+v", tg.my)
			}
		}},
		{"mysql://root:pw@[::1]/test?timeout=2s&interpolateParams=false", kindMySQL, func(t *testing.T, tg *target) {
			if tg.my.Addr != "[::1]:3306" || tg.my.Timeout != 2*time.Second || tg.my.InterpolateParams {
				t.Errorf("config %+v", tg.my)
			}
		}},
		{"mysql://app:pw@/app?socket=/run/mysqld/mysqld.sock", kindMySQL, func(t *testing.T, tg *target) {
			if tg.my.Net != "unix" || tg.my.Addr != "/run/mysqld/mysqld.sock" || tg.my.DBName != "app" {
				t.Errorf("config %+v", tg.my)
			}
		}},
	} {
		tg, err := parseDSN(c.dsn)
		if err != nil {
			t.Errorf("%q: %v", c.dsn, err)
			continue
		}
		if tg.kind != c.kind {
			t.Errorf("%q: kind %q, want %q", c.dsn, tg.kind, c.kind)
			continue
		}
		t.Run(c.kind, func(t *testing.T) { c.check(t, tg) })
	}
	for _, bad := range []string{
		"localhost:5432", "redis://x", "file://otherhost/dir", "file://",
		"mysql://h:1/a/b", "mysql://h/db?socket=/s", "postgres://u:secret@h:port/db",
	} {
		_, err := parseDSN(bad)
		if err == nil {
			t.Errorf("%q: no error", bad)
		} else if strings.Contains(err.Error(), "secret") {
			t.Errorf("%q: error shows the password: %v", bad, err)
		}
	}
}

func TestRedactor(t *testing.T) {
	var r redactor
	r.add(dsnSecrets("mysql://u:pa%40ss:w@rd@host/db?x=1")...)
	r.add(dsnSecrets("postgres://u@h/db?sslmode=disable&password=hunter2")...)
	for _, s := range []string{
		"failed: pa@ss:w@rd here",
		"failed: pa%40ss:w@rd here",
		"conn postgres://u:pa%40ss:w@rd@host/db failed",
		"password=hunter2 rejected",
		"some other dsn mysql://x:leaked@h/db",
	} {
		got := r.String(s)
		for _, secret := range []string{"pa@ss", "pa%40ss", "hunter2", "leaked"} {
			if strings.Contains(got, secret) {
				t.Errorf("%q -> %q still contains %q", s, got, secret)
			}
		}
	}
	if got := r.String("nothing secret"); got != "nothing secret" {
		t.Errorf("changed a clean string: %q", got)
	}
}

func TestParseWait(t *testing.T) {
	for in, want := range map[string]time.Duration{"0": 0, "30": 30 * time.Second, "0.5": 500 * time.Millisecond, "1m30s": 90 * time.Second, "250ms": 250 * time.Millisecond} {
		if got, err := parseWait(in); err != nil || got != want {
			t.Errorf("%q: %s, %v; want %s", in, got, err, want)
		}
	}
	for _, in := range []string{"-1", "-1s", "soon", "", "1e30"} {
		if _, err := parseWait(in); err == nil {
			t.Errorf("%q: no error", in)
		}
	}
}
