// Package queuetest is the test harness shared by the job-queue modules
// (kannukiasynq, kannukiriver): a hook that counts lock events and lets a
// job wait for them, a tracker of job runs that would catch two runs of
// one item at once, unique names, and multi-process tests: child processes
// (StartChildren, ChildSpec) whose Runners count runs, skips and overlaps
// across processes through files. It imports nothing outside the root
// module (standard library only); what needs a queue's or a driver's
// types (pgxpool, asynq, River) stays in each module.
package queuetest

import (
	"crypto/rand"
	"encoding/hex"
	"testing"
	"time"
)

// HangGuard only turns a hang into a failure; it is never a timing
// assertion.
const HangGuard = 30 * time.Second

// RandomSuffix is 12 random hex digits, for names that concurrent test
// runs never share.
func RandomSuffix(t testing.TB) string {
	t.Helper()
	b := make([]byte, 6)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}
