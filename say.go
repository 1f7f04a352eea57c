package kannuki

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// Errors are said once. A backend wraps a sentinel with a plain cause; the
// Locker puts "kannuki:", the key and what happened in front, once. The
// text after that head is the cause's text without what the head already
// says: every "kannuki: " (a third-party backend, or a sentinel's own text)
// and every ": "-separated part said before (the sentinel's phrase the
// head already conveys, a part repeated by layered wrapping).

// said is an error whose text is a head and its cause said once.
type said struct {
	msg string
	err error
}

func (e *said) Error() string { return e.msg }
func (e *said) Unwrap() error { return e.err }

// sayf returns err behind the head format makes, said once.
func sayf(err error, format string, args ...any) error {
	head := fmt.Sprintf(format, args...)
	return &said{msg: head + cause(err, head), err: err}
}

// cause renders err for after head: ": " and the parts of its text that
// neither head nor an earlier part says, or "" when none is left. Phrases
// that head conveys in other words (the sentinel of the error kind the head
// names) are passed in known.
func cause(err error, head string, known ...error) string {
	if err == nil {
		return ""
	}
	var b strings.Builder
	seen := []string{head}
	for _, k := range known {
		seen = append(seen, strings.TrimPrefix(k.Error(), "kannuki: "))
	}
	text := strings.ReplaceAll(err.Error(), "kannuki: ", "")
	for _, q := range quotedIn(head) { // the head names the key: the cause need not
		text = strings.ReplaceAll(text, "lock "+q+" ", "lock ")
		text = strings.ReplaceAll(text, q+" ", "it ")
		text = strings.ReplaceAll(text, " "+q, " it")
	}
	for part := range strings.SplitSeq(text, ": ") {
		part = strings.TrimSpace(part)
		if strings.HasPrefix(part, "it ") {
			part = "the lock " + part[len("it "):]
		}
		if part == "" || saidBefore(seen, part) {
			continue
		}
		seen = append(seen, part)
		b.WriteString(": ")
		b.WriteString(part)
	}
	return b.String()
}

// quotedIn returns the Go-quoted strings in s (the keys a head names).
func quotedIn(s string) []string {
	var out []string
	for {
		i := strings.IndexByte(s, '"')
		if i < 0 {
			return out
		}
		j := i + 1
		for j < len(s) && s[j] != '"' {
			if s[j] == '\\' {
				j++
			}
			j++
		}
		if j >= len(s) {
			return out
		}
		out = append(out, s[i:j+1])
		s = s[j+1:]
	}
}

// saidBefore reports whether part is one of seen, or the head (seen[0])
// ends with it.
func saidBefore(seen []string, part string) bool {
	if strings.HasSuffix(seen[0], part) {
		return true
	}
	for _, s := range seen[1:] {
		if s == part {
			return true
		}
	}
	return false
}

// human rounds d to what a person reads: microseconds below a
// millisecond, a tenth of a millisecond below a second, then centiseconds.
func human(d time.Duration) time.Duration {
	switch {
	case d < time.Millisecond:
		return d.Round(time.Microsecond)
	case d < time.Second:
		return d.Round(100 * time.Microsecond)
	}
	return d.Round(10 * time.Millisecond)
}

// innermost returns the cause inside a *NotAcquiredError err, so that a
// refusal relayed by another layer (a Strategy that returned the Locker's
// own error) is not said twice.
func innermost(err error) error {
	var na *NotAcquiredError
	for errors.As(err, &na) && na.Err != nil && na.Err != err {
		err = na.Err
	}
	return err
}
