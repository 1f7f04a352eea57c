package main

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/kannuki-go/kannuki/internal/testdb"
)

// The CLI's own PostgreSQL locks show their key in "kannuki locks", not
// only their number, even with no keepalive statement to carry it.
func TestPostgresLockNames(t *testing.T) {
	s := postgresStore(t)
	key, f := uniqueKey(t), newFiles(t)
	holder := hold(t, s, f, key, "--keepalive", "0")
	code, out, stderr := invoke(t, nil, append([]string{"locks"}, s.args()...)...)
	if code != 0 || !strings.Contains(out, key) {
		t.Errorf("locks does not name %q: exit %d\nstdout: %s\nstderr: %s", key, code, out, stderr)
	}
	code, out, _ = invoke(t, nil, append([]string{"locks"}, s.args("--json")...)...)
	var ls locksJSON
	if err := json.Unmarshal([]byte(out), &ls); err != nil || code != 0 {
		t.Fatalf("locks --json: exit %d, %v: %s", code, err, out)
	}
	named := false
	for _, l := range ls.Locks {
		named = named || l.Name == key && l.Granted
	}
	if !named {
		t.Errorf("locks --json has no held lock named %q: %s", key, out)
	}
	touch(t, f.gof)
	holder.wait()
}

// On MySQL/MariaDB, "kannuki locks" lists a held lock nobody waits for
// where the server can tell, and otherwise says so and names the setting
// that would show it, instead of "no locks held".
func TestMySQLHeldLocks(t *testing.T) {
	s := mysqlStore(t)
	db := openDB(t, "MariaDB", "mysql", testdb.MySQLDSN())
	note := mysqlLocksNote(context.Background(), db)
	key, f := uniqueKey(t), newFiles(t)
	holder := hold(t, s, f, key)
	code, out, stderr := invoke(t, nil, append([]string{"locks"}, s.args()...)...)
	if code != 0 {
		t.Fatalf("locks: exit %d: %s", code, stderr)
	}
	switch {
	case note == "":
		if !strings.Contains(strings.ToLower(out), strings.ToLower(derive(t, key).Name)) {
			t.Errorf("the server lists held locks, but locks does not show %q:\n%s", key, out)
		}
	default:
		t.Logf("server without a listing of held locks: %s", note)
		if strings.Contains(out, "no locks held") {
			t.Errorf("locks claims no lock is held: %s", out)
		}
		if !strings.Contains(stderr, "performance_schema") || !strings.Contains(stderr, "not listed") {
			t.Errorf("locks does not say what it cannot show and what would show it: %q", stderr)
		}
		if mariadb(t) && !strings.Contains(stderr, "metadata_lock_info") {
			t.Errorf("on MariaDB the note does not name the metadata_lock_info plugin: %q", stderr)
		}
		code, out, _ = invoke(t, nil, append([]string{"locks"}, s.args("--json")...)...)
		var ls locksJSON
		if err := json.Unmarshal([]byte(out), &ls); err != nil || code != 0 || ls.Note == "" {
			t.Errorf("locks --json: exit %d, %v, no note: %s", code, err, out)
		}
	}
	touch(t, f.gof)
	holder.wait()
}

// mariadb reports whether the test server is MariaDB (not MySQL).
func mariadb(t *testing.T) bool {
	db := openDB(t, "MariaDB", "mysql", testdb.MySQLDSN())
	var v string
	if err := db.QueryRow("SELECT VERSION()").Scan(&v); err != nil {
		t.Fatal(err)
	}
	return strings.Contains(strings.ToLower(v), "mariadb")
}
