package backendtest

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/kannuki-go/kannuki/store"
)

// testCrash: a process holding the lock is killed with SIGKILL (no deferred
// release runs); the store frees the lock and a waiter in this process gets
// it.
func (s *suite) testCrash(t *testing.T) {
	if !s.h.MultiProcess {
		t.Skip("Harness.MultiProcess is false: the store is not shared across processes")
	}
	// The store first: without it the harness skips (or fails) here, with
	// its own reason, rather than the child dying for the same cause.
	b := s.h.New(t)
	key := newKey(t, "")
	dir := t.TempDir()
	c := s.startChild(t, childSpec{Role: roleHold, Key: key, Dir: dir, Index: 1})

	// Wait until the child says it holds the key.
	deadline := time.Now().Add(hangGuard)
	for {
		if _, err := os.Stat(filepath.Join(dir, "held")); err == nil {
			break
		}
		if c.Exited() {
			c.wait(t, "holding child")
			t.Fatal("the holding child exited before taking the lock")
		}
		if time.Now().After(deadline) {
			t.Fatalf("the child did not take the lock within %s\n--- output:\n%s", hangGuard, c.Out.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
	s.expectHeld(t, key, "while the child holds it")

	ctx, cancel := guardCtx()
	defer cancel()
	l, err := b.Acquire(ctx, key, excl(0))
	expectNotAcquired(t, "try while the child holds it", l, err)

	ch := acquireAsync(ctx, b, key, excl(store.WaitForever))
	expectPending(t, ch, "waiter while the child holds it")
	c.kill(t)
	r := await(t, ch, "waiter after the holder was killed")
	if r.err != nil {
		t.Fatalf("waiter after the holding process was killed: %v", r.err)
	}
	s.expectHeld(t, key, "waiter after the crash")
	mustRelease(t, r.lease)
	s.expectFree(t, key, "after the waiter released")
}
