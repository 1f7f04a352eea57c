package backendtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"testing"
	"time"

	"github.com/kannuki-go/kannuki/internal/saidonce"
	"github.com/kannuki-go/kannuki/keys"
	"github.com/kannuki-go/kannuki/store"

	"github.com/kannuki-go/kannuki"
)

const (
	// hangGuard bounds every wait the suite expects to end; it only turns
	// a hang into a failure and is never a timing assertion.
	hangGuard = 30 * time.Second
	// settle is how long the suite watches for something that must not
	// happen (a waiter entering while the lock is held). A slow machine can
	// only make such a check miss a bug, never fail a correct backend.
	settle = 100 * time.Millisecond
	// freeGrace is how long a key may stay held after an Acquire returned
	// an error: a backend that destroys a connection whose lock state is in
	// doubt cannot make the server end that session synchronously, and on
	// a loaded machine ending it (and dialing the connection that checks)
	// can take seconds. A lock truly left behind stays held for good, so a
	// long grace only delays that failure; 3 s failed under two CPU burners.
	freeGrace = 15 * time.Second
)

// guardCtx is a context bounded by hangGuard.
func guardCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), hangGuard)
}

// randSuffix makes keys unique across runs and concurrent test processes
// sharing one database.
func randSuffix() string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// keyName is a unique key name for t.
func keyName(t testing.TB, what string) string {
	name := "kannuki-backendtest/" + t.Name() + "/" + randSuffix()
	if what != "" {
		name += "/" + what
	}
	return name
}

// newKey derives a unique key for t with the default scheme.
func newKey(t testing.TB, what string) store.Key {
	t.Helper()
	name := keyName(t, what)
	k, err := keys.Ruby{}.Derive("", name)
	if err != nil {
		t.Fatalf("derive key %q: %v", name, err)
	}
	return k
}

// excl and shared build requests.
func excl(wait time.Duration) store.Request {
	return store.Request{Mode: store.ModeExclusive, Wait: wait}
}

func shared(wait time.Duration) store.Request {
	return store.Request{Mode: store.ModeShared, Wait: wait}
}

// mustAcquire acquires key or fails the test.
func mustAcquire(t testing.TB, b store.Backend, key store.Key, req store.Request) store.Lease {
	t.Helper()
	ctx, cancel := guardCtx()
	defer cancel()
	l, err := b.Acquire(ctx, key, req)
	if err != nil {
		t.Fatalf("Acquire(%q, %s, wait %s): %v", key.String, req.Mode, waitString(req.Wait), err)
	}
	if l == nil {
		t.Fatalf("Acquire(%q) returned a nil Lease and no error", key.String)
	}
	return l
}

// mustRelease releases l or fails the test.
func mustRelease(t testing.TB, l store.Lease) {
	t.Helper()
	ctx, cancel := guardCtx()
	defer cancel()
	if err := l.Release(ctx); err != nil {
		t.Fatalf("Release: %v", err)
	}
}

// releaseLater releases l if the test ends early, so a failing case does
// not leave a lock behind for the next one.
func releaseLater(t testing.TB, l store.Lease) func() {
	done := false
	t.Cleanup(func() {
		if !done {
			_ = l.Release(context.Background())
		}
	})
	return func() { done = true }
}

// expectNotAcquired checks that err reports a lock that was not granted,
// and not a context error: the context had not ended.
func expectNotAcquired(t testing.TB, what string, l store.Lease, err error) {
	t.Helper()
	if err == nil {
		if l != nil {
			_ = l.Release(context.Background())
		}
		t.Errorf("%s: acquired a lock that is held elsewhere", what)
		return
	}
	if !errors.Is(err, kannuki.ErrNotAcquired) {
		t.Errorf("%s: error %v does not match ErrNotAcquired", what, err)
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("%s: error %v matches a context error, but the context had not ended", what, err)
	}
	checkPlain(t, what, err)
}

// checkPlain checks that a backend's error says each thing once. It needs
// no "kannuki:" head: the Locker adds that.
func checkPlain(t testing.TB, what string, err error) {
	t.Helper()
	if p := saidonce.Repeats(err.Error()); p != "" {
		t.Errorf("%s: error %q: %s", what, err, p)
	}
}

// checkPrefix checks that an error message says each thing once, after
// one "kannuki:" at its start.
func checkPrefix(t testing.TB, what string, err error) {
	t.Helper()
	if p := saidonce.Problem(err.Error()); p != "" {
		t.Errorf("%s: error %q: %s", what, err, p)
	}
}

// expectHeld checks from the third session that key is held.
func (s *suite) expectHeld(t testing.TB, key store.Key, why string) {
	t.Helper()
	if !s.heldOnServer(t, key) {
		t.Errorf("%s: key %q is not held on the server", why, key.String)
	}
}

// expectFree checks from the third session that key is not held. Use it
// after a successful Release: the unlock has run, so there is no grace.
func (s *suite) expectFree(t testing.TB, key store.Key, why string) {
	t.Helper()
	if s.heldOnServer(t, key) {
		t.Errorf("%s: key %q is still held on the server", why, key.String)
	}
}

// expectFreed checks that key becomes free within freeGrace: for keys whose
// last holder was an Acquire that failed, a killed session or a crashed
// process, which the server may clean up asynchronously.
func (s *suite) expectFreed(t testing.TB, key store.Key, why string) {
	t.Helper()
	deadline := time.Now().Add(freeGrace)
	for s.heldOnServer(t, key) {
		if time.Now().After(deadline) {
			t.Errorf("%s: key %q still held on the server %s later", why, key.String, freeGrace)
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// result is what an Acquire in another goroutine returned.
type result struct {
	lease store.Lease
	err   error
	took  time.Duration
}

// acquireAsync runs Acquire in a goroutine.
func acquireAsync(ctx context.Context, b store.Backend, key store.Key, req store.Request) <-chan result {
	ch := make(chan result, 1)
	go func() {
		start := time.Now()
		l, err := b.Acquire(ctx, key, req)
		ch <- result{l, err, time.Since(start)}
	}()
	return ch
}

// await waits for an async result, failing the test after hangGuard.
func await(t testing.TB, ch <-chan result, what string) result {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(hangGuard):
		t.Fatalf("%s: no answer after %s", what, hangGuard)
		return result{}
	}
}

// expectPending checks that ch stays silent for settle: the waiter must
// still be waiting. It ends the test otherwise.
func expectPending(t testing.TB, ch <-chan result, what string) {
	t.Helper()
	select {
	case r := <-ch:
		if r.err == nil {
			_ = r.lease.Release(context.Background())
			t.Fatalf("%s: acquired while another holder had the lock", what)
		}
		t.Fatalf("%s: returned early with %v", what, r.err)
	case <-time.After(settle):
	}
}

// waitString shows a Request.Wait.
func waitString(d time.Duration) string {
	if d < 0 {
		return "forever"
	}
	return d.String()
}
