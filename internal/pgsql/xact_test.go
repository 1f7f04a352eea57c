package pgsql

import (
	"strings"
	"testing"
	"time"

	"github.com/kannuki-go/kannuki/store"
)

func TestXactTry(t *testing.T) {
	for _, c := range []struct {
		k    store.Key
		m    store.Mode
		want string
	}{
		{store.Key{String: "k", ID: -42}, store.ModeExclusive, "SELECT pg_try_advisory_xact_lock(-42) /* kannuki: k */"},
		{store.Key{String: "a*/b", Pair: true, K1: 1, K2: -2}, store.ModeShared, "SELECT pg_try_advisory_xact_lock_shared(1, -2) /* kannuki: a%2A/b */"},
	} {
		if got := XactTry(c.k, c.m); got != c.want {
			t.Errorf("XactTry(%+v, %v) =\n%s\nwant\n%s", c.k, c.m, got, c.want)
		}
	}
}

// TestXactWait pins the text: the savepoint first, the caller's
// lock_timeout saved before the wait's own is set, the wait, and the
// caller's lock_timeout back, in one round trip.
func TestXactWait(t *testing.T) {
	k := store.Key{String: "k", ID: 7}
	const head = "SAVEPOINT kannuki_xact_lock; " +
		"SELECT set_config('kannuki.saved_lock_timeout', current_setting('lock_timeout'), true), set_config('lock_timeout', '"
	for _, c := range []struct {
		m       store.Mode
		wait    time.Duration
		timeout string
		fn      string
	}{
		{store.ModeExclusive, store.WaitForever, "0", "pg_advisory_xact_lock(7)"},
		{store.ModeShared, 1500 * time.Microsecond, "2ms", "pg_advisory_xact_lock_shared(7)"},
		{store.ModeExclusive, 3 * time.Second, "3000ms", "pg_advisory_xact_lock(7)"},
		{store.ModeExclusive, 30 * 24 * time.Hour, "2147483647ms", "pg_advisory_xact_lock(7)"}, // cut to MaxLockTimeout
	} {
		want := head + c.timeout + "', true); SELECT " + c.fn + " /* kannuki: k */; " +
			"SELECT set_config('lock_timeout', current_setting('kannuki.saved_lock_timeout'), true)"
		if got := XactWait(k, c.m, c.wait); got != want {
			t.Errorf("XactWait(%v, %s) =\n%s\nwant\n%s", c.m, c.wait, got, want)
		}
	}
}

func TestSavepointStatements(t *testing.T) {
	for name, s := range map[string]string{"ReleaseSavepoint": ReleaseSavepoint, "RollbackSavepoint": RollbackSavepoint, "CheckTx": CheckTx} {
		// Each ends the savepoint XactWait (or CheckTx itself) opens.
		if !strings.HasSuffix(s, "RELEASE SAVEPOINT "+Savepoint) {
			t.Errorf("%s = %q does not end the savepoint", name, s)
		}
	}
	if !strings.HasPrefix(RollbackSavepoint, "ROLLBACK TO SAVEPOINT "+Savepoint+";") {
		t.Errorf("RollbackSavepoint = %q does not undo the savepoint first", RollbackSavepoint)
	}
	if MaxLockTimeout != 2147483647*time.Millisecond {
		t.Errorf("MaxLockTimeout = %s", MaxLockTimeout)
	}
}
