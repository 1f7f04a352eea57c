package kannukimysql

import (
	"encoding/hex"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/kannuki-go/kannuki/keys"
	"github.com/kannuki-go/kannuki/store"
)

// MaxNameChars is the longest GET_LOCK name MySQL accepts, in characters.
// MariaDB allows 192 bytes; Kannuki keeps to the stricter rule so that a
// name that works on one server works on the other.
const MaxNameChars = 64

// maxNameBytes is MariaDB's limit (64 characters of up to 3 bytes); a name
// of 64 characters of 4-byte UTF-8 is longer.
const maxNameBytes = 192

// lockName checks key.Name, the GET_LOCK name. The default key scheme keeps
// it within 64 characters; other schemes may not.
func lockName(key store.Key) (string, error) {
	name := key.Name
	switch {
	case name == "":
		return "", &keys.Error{Key: key.String, Reason: "empty lock name"}
	case !utf8.ValidString(name):
		return "", &keys.Error{Key: key.String, Reason: "lock name is not valid UTF-8"}
	case strings.IndexByte(name, 0) >= 0:
		// MariaDB cuts a lock name at a NUL byte: "a\x00b" would lock "a".
		return "", &keys.Error{Key: key.String, Reason: "lock name contains a NUL byte"}
	case utf8.RuneCountInString(name) > MaxNameChars:
		return "", &keys.Error{Key: key.String, Reason: "MySQL lock names are at most 64 characters; use a key scheme that hashes long keys (keys.Ruby does)"}
	case len(name) > maxNameBytes:
		return "", &keys.Error{Key: key.String, Reason: "MariaDB lock names are at most 192 bytes"}
	}
	return name, nil
}

// The statements. Every one is a single SELECT: one round trip.
//
// Prepared forms (the default) take the name as a bind parameter. The
// CONVERT(CAST(? AS BINARY) USING utf8mb4) makes the lock name the exact
// UTF-8 bytes of the key whatever the connection's character set (with
// charset=latin1 in the DSN a plain ? would be transcoded and different keys
// could meet on one name).
//
// Text forms carry the name as a hex literal, CONVERT(X'...' USING utf8mb4):
// the user's string is encoded, never spliced, so no quote, backslash or
// comment marker in a key can change the statement. They need no prepared
// statement and show the name (in hex) in the process list, which is why
// waits use them.
const (
	nameParam = "CONVERT(CAST(? AS BINARY) USING utf8mb4)"

	prepTry     = "SELECT GET_LOCK(" + nameParam + ", 0)"
	prepRelease = "SELECT RELEASE_LOCK(" + nameParam + ")"
	// <=> is NULL-safe: 0 when nobody holds the lock, never NULL.
	prepCheck = "SELECT IS_USED_LOCK(" + nameParam + ") <=> CONNECTION_ID()"
	// prepRelock (store.Relocker) is 0 when RELEASE_LOCK found the lock
	// not held by this session (0 or NULL), 1 when it released it and the
	// try found it taken (the server granted it to a session already
	// waiting), 2 when it released it and took it again. IF evaluates its
	// condition first and then only the branch it returns, so the try runs
	// after the release, and only when that succeeded.
	prepRelock   = "SELECT " + relockPrefix + nameParam + relockMiddle + nameParam + relockSuffix
	relockPrefix = "IF(RELEASE_LOCK("
	relockMiddle = ") = 1, IF(GET_LOCK("
	relockSuffix = ", 0) = 1, 2, 1), 0)"

	// sessionQuery identifies a connection once: the id for KILL, the
	// version for the server's flavour.
	sessionQuery = "SELECT CONNECTION_ID(), VERSION()"
)

// stmtKind indexes the statements a session prepares.
type stmtKind int

const (
	stmtTry stmtKind = iota
	stmtRelease
	stmtCheck
	stmtRelock
	numStmts
)

var preparedText = [numStmts]string{stmtTry: prepTry, stmtRelease: prepRelease, stmtCheck: prepCheck, stmtRelock: prepRelock}

// nameParams is how many times a prepared statement takes the name.
func nameParams(kind stmtKind) int {
	if kind == stmtRelock {
		return 2
	}
	return 1
}

// nameLiteral is the SQL expression of name as a hex literal.
func nameLiteral(name string) string {
	var b strings.Builder
	b.Grow(len("CONVERT(X'' USING utf8mb4)") + 2*len(name))
	b.WriteString("CONVERT(X'")
	b.WriteString(hex.EncodeToString([]byte(name)))
	b.WriteString("' USING utf8mb4)")
	return b.String()
}

// textStmt is the parameterless form of a prepared statement.
func textStmt(kind stmtKind, name string) string {
	lit := nameLiteral(name)
	switch kind {
	case stmtTry:
		return "SELECT GET_LOCK(" + lit + ", 0)"
	case stmtRelease:
		return "SELECT RELEASE_LOCK(" + lit + ")"
	case stmtRelock:
		return "SELECT " + relockPrefix + lit + relockMiddle + lit + relockSuffix
	default:
		return "SELECT IS_USED_LOCK(" + lit + ") <=> CONNECTION_ID()"
	}
}

// waitStmt is the statement that waits up to timeout (a literal from
// timeoutLiteral, never negative) on the server.
func waitStmt(name, timeout string) string {
	return "SELECT GET_LOCK(" + nameLiteral(name) + ", " + timeout + ")"
}

// heldStmt reports whether anyone holds name.
func heldStmt(name string) string {
	return "SELECT IS_USED_LOCK(" + nameLiteral(name) + ") IS NOT NULL"
}

// timeoutLiteral is d in seconds for GET_LOCK, rounded up so that the
// server never gives up before d: microseconds ("0.250000") for MariaDB,
// whole seconds when wholeSeconds (MySQL truncates a fraction to an
// integer, so 0.3 would be a single try). It is never negative or zero for
// d > 0: GET_LOCK(name, -1) waits forever on MySQL but fails at once on
// MariaDB.
func timeoutLiteral(d time.Duration, wholeSeconds bool) string {
	if d <= 0 {
		return "0"
	}
	if wholeSeconds {
		s := (d + time.Second - 1) / time.Second
		return strconv.FormatInt(int64(s), 10)
	}
	us := int64((d + time.Microsecond - 1) / time.Microsecond)
	frac := strconv.FormatInt(us%1e6, 10)
	return strconv.FormatInt(us/1e6, 10) + "." + strings.Repeat("0", 6-len(frac)) + frac
}

// serverWait is what a wait statement asks of the server for a wait of d:
// the literal, and whether the client must cut the wait itself at d
// because the server's whole seconds would run past it.
func serverWait(d time.Duration, wholeSeconds bool) (lit string, clientCut bool) {
	return timeoutLiteral(d, wholeSeconds), wholeSeconds && d%time.Second != 0
}

// parseWaitName extracts the lock name from the text of a waiting
// GET_LOCK statement as the process list shows it: Kannuki's hex form, or
// a plain quoted literal as other clients send it. ok is false when the
// text is neither (a prepared statement shows "?").
func parseWaitName(info string) (name string, ok bool) {
	upper := strings.ToUpper(info)
	i := strings.Index(upper, "GET_LOCK(")
	if i < 0 {
		return "", false
	}
	rest := strings.TrimLeft(info[i+len("GET_LOCK("):], " \t\r\n")
	upperRest := strings.ToUpper(rest)
	if strings.HasPrefix(upperRest, "CONVERT(X'") {
		rest = rest[len("CONVERT(X'"):]
		j := strings.IndexByte(rest, '\'')
		if j < 0 {
			return "", false
		}
		b, err := hex.DecodeString(rest[:j])
		if err != nil {
			return "", false
		}
		return string(b), true
	}
	if rest == "" || (rest[0] != '\'' && rest[0] != '"') {
		return "", false
	}
	return unquote(rest)
}

// unquote reads a MySQL string literal at the start of s ('...' or "...",
// with doubled quotes and backslash escapes).
func unquote(s string) (string, bool) {
	q := s[0]
	var b strings.Builder
	for i := 1; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '\\' && i+1 < len(s):
			i++
			switch s[i] {
			case 'n':
				b.WriteByte('\n')
			case 't':
				b.WriteByte('\t')
			case 'r':
				b.WriteByte('\r')
			case '0':
				b.WriteByte(0)
			case 'Z':
				b.WriteByte(26)
			default:
				b.WriteByte(s[i])
			}
		case c == q && i+1 < len(s) && s[i+1] == q:
			b.WriteByte(q)
			i++
		case c == q:
			return b.String(), true
		default:
			b.WriteByte(c)
		}
	}
	return "", false
}
