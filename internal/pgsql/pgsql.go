// Package pgsql holds the PostgreSQL statements shared by kannukipg
// (database/sql) and kannukipgxv5 (pgx): advisory lock SQL, the safe key
// comment and the SQLSTATE codes Kannuki reacts to.
//
// The derived integer ids are Kannuki's own numbers and are written into the
// SQL as literals; the user's key string appears only inside a comment, after
// Comment has made it safe. That keeps every statement one round trip on the
// simple protocol with any driver.
package pgsql

import (
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/kannuki-go/kannuki/keys"
	"github.com/kannuki-go/kannuki/store"
)

// SQLSTATE codes.
const (
	CodeLockNotAvailable = "55P03" // lock_timeout expired
	CodeDeadlock         = "40P01" // deadlock_detected
	CodeQueryCanceled    = "57014" // statement canceled (cancel request, statement_timeout)
	CodeAdminShutdown    = "57P01" // pg_terminate_backend, server shutdown
)

// maxComment bounds the key shown in a comment; the id identifies the lock,
// the comment only helps a human reading pg_stat_activity.
const maxComment = 200

// Comment returns key as an SQL block comment that cannot end early or
// smuggle anything: '*', '%', '\\' and control bytes are %XX-encoded (so
// "*/" cannot appear and distinct keys stay distinct), and long keys are cut.
func Comment(key string) string {
	// Keys from a Locker are valid UTF-8; a hand-made Key may not be, and
	// PostgreSQL rejects a statement with invalid UTF-8.
	key = strings.ToValidUTF8(key, "\uFFFD")
	var b strings.Builder
	b.Grow(len(key) + 16)
	b.WriteString("/* kannuki: ")
	for i := 0; i < len(key); i++ {
		c := key[i]
		// Cut only where a character starts (not at a UTF-8 continuation
		// byte): PostgreSQL rejects a statement with invalid UTF-8.
		if b.Len() > maxComment && utf8.RuneStart(c) {
			b.WriteString("...")
			break
		}
		if c < 0x20 || c == 0x7f || c == '*' || c == '%' || c == '\\' {
			const hexdigits = "0123456789ABCDEF"
			b.WriteByte('%')
			b.WriteByte(hexdigits[c>>4])
			b.WriteByte(hexdigits[c&15])
			continue
		}
		b.WriteByte(c)
	}
	b.WriteString(" */")
	return b.String()
}

// Args returns the advisory function arguments for key as SQL literals:
// "123" for the bigint form, "1, 2" for the two-int4 form.
func Args(k store.Key) string {
	if k.Pair {
		return strconv.FormatInt(int64(k.K1), 10) + ", " + strconv.FormatInt(int64(k.K2), 10)
	}
	return strconv.FormatInt(k.ID, 10)
}

func suffix(m store.Mode) string {
	if m == store.ModeShared {
		return "_shared"
	}
	return ""
}

// TryLock is one statement returning a boolean: granted or not.
func TryLock(k store.Key, m store.Mode) string {
	return "SELECT pg_try_advisory_lock" + suffix(m) + "(" + Args(k) + ") " + Comment(k.String)
}

// Lock waits on the server. With wait > 0 the wait is bounded by
// lock_timeout set transaction-locally in the same statement (set_config
// with is_local = true), so it never outlives the statement or leaks to a
// pooled connection; expiry raises 55P03. wait < 0 waits until granted.
func Lock(k store.Key, m store.Mode, wait time.Duration) string {
	call := "pg_advisory_lock" + suffix(m) + "(" + Args(k) + ")"
	if wait < 0 {
		return "SELECT " + call + " " + Comment(k.String)
	}
	return "SELECT set_config('lock_timeout', '" + LockTimeout(wait) + "', true), " + call + " " + Comment(k.String)
}

// LockTimeout renders wait for lock_timeout in whole milliseconds, at least
// 1 ms (0 would mean "no timeout").
func LockTimeout(wait time.Duration) string {
	wait = min(wait, MaxLockTimeout) // PostgreSQL refuses more than INT_MAX ms
	ms := (wait + time.Millisecond - 1) / time.Millisecond
	if ms < 1 {
		ms = 1
	}
	return strconv.FormatInt(int64(ms), 10) + "ms"
}

// Relock gives the lock back and, only when that succeeded, tries to take
// it again at once (store.Relocker). It returns an integer: 0 when the
// unlock found the lock not held, 1 when it was unlocked and the try found
// it taken (the server granted it to a session already waiting), 2 when it
// was unlocked and taken again. The unlock runs in FROM, so the try in the
// select list comes after it, and CASE evaluates the try only when the
// unlock returned true.
func Relock(k store.Key, m store.Mode) string {
	return relock(m, Args(k))
}

// RelockBound is Relock with the key as bound parameters, indexed
// [shared][pair]: "$1::bigint", or "$1::int4, $2::int4" for a pair key. A
// constant text per form suits drivers that cache prepared statements by
// text.
var RelockBound = [2][2]string{
	{relock(store.ModeExclusive, "$1::bigint"), relock(store.ModeExclusive, "$1::int4, $2::int4")},
	{relock(store.ModeShared, "$1::bigint"), relock(store.ModeShared, "$1::int4, $2::int4")},
}

func relock(m store.Mode, args string) string {
	return "SELECT CASE WHEN NOT u THEN 0 WHEN pg_try_advisory_lock" + suffix(m) + "(" + args + ") THEN 2 ELSE 1 END FROM pg_advisory_unlock" + suffix(m) + "(" + args + ") u"
}

// Unlock returns a boolean: true when the lock was held and is now released.
func Unlock(k store.Key, m store.Mode) string {
	return "SELECT pg_advisory_unlock" + suffix(m) + "(" + Args(k) + ")"
}

// Where returns the pg_locks predicate selecting key's advisory lock in the
// current database only (advisory keys are per database, pg_locks is
// cluster-wide).
func Where(k store.Key) string {
	var classid, objid uint32
	sub := "1"
	if k.Pair {
		classid, objid, sub = uint32(k.K1), uint32(k.K2), "2"
	} else {
		classid, objid = keys.ClassObjID(k.ID)
	}
	return "locktype = 'advisory' AND database = (SELECT oid FROM pg_database WHERE datname = current_database())" +
		" AND classid = " + strconv.FormatUint(uint64(classid), 10) +
		" AND objid = " + strconv.FormatUint(uint64(objid), 10) +
		" AND objsubid = " + sub
}

// Held returns a boolean: does any session hold key (granted, any mode)?
func Held(k store.Key) string {
	return "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE " + Where(k) + " AND granted)"
}

// HeldByMe returns a boolean: does this session hold key? Used to re-check
// after a 55P03, which PostgreSQL can report although the lock was granted.
func HeldByMe(k store.Key, m store.Mode) string {
	mode := "ExclusiveLock"
	if m == store.ModeShared {
		mode = "ShareLock"
	}
	return "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE " + Where(k) +
		" AND granted AND pid = pg_backend_pid() AND mode = '" + mode + "')"
}

// Locks lists advisory locks of the current database with who holds or waits.
const Locks = `SELECT l.classid::bigint, l.objid::bigint, l.objsubid::int, l.mode, l.granted, l.pid,
	COALESCE(a.application_name, ''), COALESCE(host(a.client_addr), ''),
	COALESCE(CASE WHEN l.granted THEN a.state_change ELSE a.query_start END, a.backend_start),
	COALESCE(a.query, '')
FROM pg_locks l LEFT JOIN pg_stat_activity a ON a.pid = l.pid
WHERE l.locktype = 'advisory' AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
ORDER BY l.granted DESC, l.pid`

// NameFromQuery extracts the key from a Kannuki comment in a query text, or "".
func NameFromQuery(q string) string {
	const open = "/* kannuki: "
	i := strings.Index(q, open)
	if i < 0 {
		return ""
	}
	rest := q[i+len(open):]
	j := strings.Index(rest, " */")
	if j < 0 {
		return ""
	}
	return rest[:j]
}
