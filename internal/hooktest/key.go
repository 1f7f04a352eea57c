package hooktest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"strings"
	"testing"
)

// UniqueKey is a key no other test (or concurrent test run) uses:
// prefix, the test's name and a random suffix.
func UniqueKey(t testing.TB, prefix string) string {
	return prefix + "/" + strings.ReplaceAll(t.Name(), "/", "-") + "/" + randomHex()
}

// Unique returns s with a random suffix, so that concurrent runs of the
// tests never share keys.
func Unique(s string) string { return s + "-" + randomHex() }

func randomHex() string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// Nothing is a critical section that does nothing.
func Nothing(context.Context) error { return nil }
