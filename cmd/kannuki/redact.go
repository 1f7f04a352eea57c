package main

import (
	"io"
	"regexp"
	"slices"
	"strings"
	"sync"
)

// redactor removes passwords from everything kannuki itself prints. It is a
// second line of defence: kannuki's own messages show DSNs only in redacted
// form, but a driver error may quote a connection string, so every byte
// written to kannuki's stdout and stderr passes through here (the child's
// output does not: it inherits the real file descriptors).
type redactor struct {
	mu      sync.Mutex
	secrets []string
}

const redacted = "xxxxx"

// userinfoPassword matches the password of any URL-style DSN that slipped
// into a message, including DSNs kannuki never saw whole.
var userinfoPassword = regexp.MustCompile(`(://[^:/?#@\s]*):[^@\s]+@`)

// add registers secrets to remove from output.
func (r *redactor) add(secrets ...string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, s := range secrets {
		if s != "" && s != redacted {
			r.secrets = append(r.secrets, s)
		}
	}
}

// String returns s without any registered secret.
func (r *redactor) String(s string) string {
	r.mu.Lock()
	secrets := r.secrets
	r.mu.Unlock()
	// Longest first, so a secret that contains another goes whole.
	for _, sec := range sortedByLen(secrets) {
		s = strings.ReplaceAll(s, sec, redacted)
	}
	return userinfoPassword.ReplaceAllString(s, "${1}:"+redacted+"@")
}

func sortedByLen(in []string) []string {
	out := slices.Clone(in)
	slices.SortStableFunc(out, func(a, b string) int { return len(b) - len(a) })
	return out
}

// writer wraps w so that everything written through it is redacted. Each
// Write is redacted whole: kannuki writes whole lines (fmt, slog, JSON).
func (r *redactor) writer(w io.Writer) io.Writer { return &redactWriter{r: r, w: w} }

type redactWriter struct {
	r *redactor
	w io.Writer
}

func (rw *redactWriter) Write(p []byte) (int, error) {
	if _, err := io.WriteString(rw.w, rw.r.String(string(p))); err != nil {
		return 0, err
	}
	return len(p), nil
}
