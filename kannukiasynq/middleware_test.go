package kannukiasynq_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/kannuki-go/kannuki"
	"github.com/kannuki-go/kannuki/internal/queuetest"
	"github.com/kannuki-go/kannuki/kannukiasynq"
	"github.com/kannuki-go/kannuki/kannukijob"
	"github.com/kannuki-go/kannuki/kannukimem"
)

// These tests call the middleware directly with tasks, on the in-memory
// backend: they pin its decisions without asynq servers or a database.

func TestKeyIsCanonical(t *testing.T) {
	a, err := kannukiasynq.Key("sync", []byte(`{"b":1,"a":[1,2],"c":{"y":true,"x":null}}`))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := kannukiasynq.Key("sync", []byte(" {\n \"c\" : {\"x\":null,\"y\":true}, \"a\":[1, 2], \"b\":1 } "))
	if want := `sync:{"a":[1,2],"b":1,"c":{"x":null,"y":true}}`; a != want || b != want {
		t.Fatalf("keys %q and %q, want %q", a, b, want)
	}
	s1, _ := kannukiasynq.Key("sync", []byte(`["a-b"]`))
	s2, _ := kannukiasynq.Key("sync", []byte(`["a","b"]`))
	if s1 == s2 {
		t.Fatalf(`["a-b"] and ["a","b"] gave the same key %q`, s1)
	}
	if k, _ := kannukiasynq.Key("sync", []byte(`{"id":123456789012345678901234567890}`)); k != `sync:{"id":123456789012345678901234567890}` {
		t.Fatalf("large number not kept as written: %q", k)
	}
	for payload, want := range map[string]string{
		"\x00\x01binary": `sync:"base64:AAFiaW5hcnk="`,
		"":               `sync:"base64:"`,
		`{"a":1} }`:      `sync:"base64:eyJhIjoxfSB9"`,
		"plain text":     `sync:"base64:cGxhaW4gdGV4dA=="`,
	} {
		if k, err := kannukiasynq.Key("sync", []byte(payload)); k != want || err != nil {
			t.Errorf("payload %q: key %q, %v; want %q", payload, k, err, want)
		}
	}
	if _, err := kannukiasynq.Key("", []byte(`{}`)); !errors.Is(err, kannuki.ErrInvalidArgument) {
		t.Errorf("empty type: error %v, want ErrInvalidArgument", err)
	}
}

func TestLongPayloadsAreHashed(t *testing.T) {
	long := strings.Repeat("x", kannukiasynq.MaxKeyPayloadLen)
	a, _ := kannukiasynq.Key("big", []byte(`{"b":"`+long+`","a":1}`))
	b, _ := kannukiasynq.Key("big", []byte(`{"a":1,"b":"`+long+`"}`))
	c, _ := kannukiasynq.Key("big", []byte(`{"a":2,"b":"`+long+`"}`))
	d, _ := kannukiasynq.Key("big", []byte(long)) // not JSON
	if a != b || a == c || a == d || !strings.HasPrefix(a, `big:"sha256:`) || !strings.HasPrefix(d, `big:"sha256:`) || len(a) > 100 {
		t.Fatalf("hashed keys %q %q %q %q", a, b, c, d)
	}
}

// held runs a task through h and keeps it inside the handler until the
// returned function is called.
func held(t *testing.T, mw asynq.MiddlewareFunc, task *asynq.Task) (release func()) {
	t.Helper()
	inside, done, result := make(chan struct{}), make(chan struct{}), make(chan error, 1)
	h := mw(asynq.HandlerFunc(func(context.Context, *asynq.Task) error {
		close(inside)
		<-done
		return nil
	}))
	go func() { result <- h.ProcessTask(context.Background(), task) }()
	select {
	case <-inside:
	case err := <-result:
		t.Fatalf("first task did not run: %v", err)
	case <-time.After(queuetest.HangGuard):
		t.Fatal("first task did not start")
	}
	return func() {
		close(done)
		if err := <-result; err != nil {
			t.Errorf("first task: %v", err)
		}
	}
}

// process runs task through mw and reports whether the handler ran and the error.
func process(mw asynq.MiddlewareFunc, task *asynq.Task) (bool, error) {
	ran := false
	err := mw(asynq.HandlerFunc(func(context.Context, *asynq.Task) error { ran = true; return nil })).ProcessTask(context.Background(), task)
	return ran, err
}

func TestConflictOutcomes(t *testing.T) {
	ev := queuetest.NewEvents()
	l := kannuki.New(kannukimem.New(), kannuki.Options{Hook: ev})
	first := asynq.NewTask("email", []byte(`{"to":"a@example.com","n":1}`))
	dup := asynq.NewTask("email", []byte(`{"n":1,"to":"a@example.com"}`))
	other := asynq.NewTask("email", []byte(`{"n":2,"to":"a@example.com"}`))

	t.Run("skip", func(t *testing.T) {
		mw := kannukiasynq.Middleware(l, kannukiasynq.Options{})
		release := held(t, mw, first)
		defer release()
		if ran, err := process(mw, dup); ran || err != nil {
			t.Fatalf("duplicate: ran %v, error %v; want skipped with nil", ran, err)
		}
		if n := ev.Count(kannuki.EventSkipped, `email:{"n":1,"to":"a@example.com"}`); n != 1 {
			t.Fatalf("%d skip events, want 1", n)
		}
		if ran, err := process(mw, other); !ran || err != nil {
			t.Fatalf("distinct task: ran %v, error %v", ran, err)
		}
	})
	t.Run("retry later", func(t *testing.T) {
		mw := kannukiasynq.Middleware(l, kannukiasynq.Options{OnConflict: kannukiasynq.RetryLater, RetryAfter: 3 * time.Second})
		release := held(t, mw, first)
		defer release()
		ran, err := process(mw, dup)
		var rl *kannukijob.RetryLaterError
		if ran || !errors.As(err, &rl) || rl.After != 3*time.Second || !errors.Is(err, kannukijob.ErrDuplicate) {
			t.Fatalf("duplicate: ran %v, error %v; want a RetryLaterError after 3s", ran, err)
		}
		if d := kannukiasynq.RetryDelay(nil)(5, err, dup); d != 3*time.Second {
			t.Errorf("RetryDelay %s, want 3s", d)
		}
		if kannukiasynq.IsFailure(nil)(err) {
			t.Error("IsFailure counts a deferral as a failure")
		}
	})
	t.Run("retry later default", func(t *testing.T) {
		mw := kannukiasynq.Middleware(l, kannukiasynq.Options{OnConflict: kannukiasynq.RetryLater})
		release := held(t, mw, first)
		defer release()
		_, err := process(mw, dup)
		var rl *kannukijob.RetryLaterError
		if !errors.As(err, &rl) || rl.After != kannukiasynq.DefaultRetryAfter {
			t.Fatalf("error %v, want a RetryLaterError after DefaultRetryAfter", err)
		}
	})
	t.Run("unknown", func(t *testing.T) {
		mw := kannukiasynq.Middleware(l, kannukiasynq.Options{OnConflict: 9})
		if ran, err := process(mw, first); ran || !errors.Is(err, kannuki.ErrInvalidArgument) {
			t.Fatalf("ran %v, error %v; want ErrInvalidArgument", ran, err)
		}
	})
}

func TestRetryHelpersPassOtherErrors(t *testing.T) {
	boom := errors.New("boom")
	if d := kannukiasynq.RetryDelay(func(int, error, *asynq.Task) time.Duration { return 7 * time.Second })(1, boom, nil); d != 7*time.Second {
		t.Errorf("RetryDelay with fallback: %s, want 7s", d)
	}
	if d := kannukiasynq.RetryDelay(nil)(0, boom, asynq.NewTask("t", nil)); d < 15*time.Second {
		t.Errorf("RetryDelay without fallback: %s, want asynq's default (at least 15s)", d)
	}
	if !kannukiasynq.IsFailure(nil)(boom) || kannukiasynq.IsFailure(nil)(nil) {
		t.Error("IsFailure(nil) must treat exactly the non-nil errors as failures")
	}
	if kannukiasynq.IsFailure(func(error) bool { return false })(boom) {
		t.Error("IsFailure ignored its fallback")
	}
}

func TestTypesAllowList(t *testing.T) {
	l := kannuki.New(kannukimem.New(), kannuki.Options{})
	mw := kannukiasynq.Middleware(l, kannukiasynq.Options{Types: []string{"guarded"}})
	releaseFree := held(t, mw, asynq.NewTask("free", []byte(`{"a":1}`)))
	defer releaseFree()
	if ran, err := process(mw, asynq.NewTask("free", []byte(`{"a":1}`))); !ran || err != nil {
		t.Fatalf("unguarded duplicate: ran %v, error %v; want it run", ran, err)
	}
	releaseGuarded := held(t, mw, asynq.NewTask("guarded", []byte(`{"a":1}`)))
	defer releaseGuarded()
	if ran, err := process(mw, asynq.NewTask("guarded", []byte(`{"a":1}`))); ran || err != nil {
		t.Fatalf("guarded duplicate: ran %v, error %v; want skipped", ran, err)
	}
}

func TestKeyPayload(t *testing.T) {
	l := kannuki.New(kannukimem.New(), kannuki.Options{})
	mw := kannukiasynq.Middleware(l, kannukiasynq.Options{KeyPayload: func(task *asynq.Task) (any, error) {
		var p struct {
			Customer int `json:"customer"`
		}
		if err := json.Unmarshal(task.Payload(), &p); err != nil {
			return nil, err
		}
		if p.Customer == 0 {
			return nil, errors.New("no customer")
		}
		return p, nil
	}})
	release := held(t, mw, asynq.NewTask("bill", []byte(`{"customer":7,"nonce":1}`)))
	defer release()
	if ran, err := process(mw, asynq.NewTask("bill", []byte(`{"customer":7,"nonce":2}`))); ran || err != nil {
		t.Fatalf("same customer: ran %v, error %v; want skipped", ran, err)
	}
	if ran, err := process(mw, asynq.NewTask("bill", []byte(`{"customer":8,"nonce":1}`))); !ran || err != nil {
		t.Fatalf("other customer: ran %v, error %v; want run", ran, err)
	}
	if ran, err := process(mw, asynq.NewTask("bill", []byte(`{"nonce":1}`))); ran || err == nil || !strings.Contains(err.Error(), "no customer") {
		t.Fatalf("KeyPayload error: ran %v, error %v; want the error", ran, err)
	}
}

func TestSkippedKey(t *testing.T) {
	if key, ok := kannukiasynq.SkippedKey([]byte(`{"kannuki_skipped":true,"kannuki_key":"k:1"}`)); !ok || key != "k:1" {
		t.Errorf("SkippedKey = %q, %v", key, ok)
	}
	for _, r := range []string{"", "not json", `{"kannuki_skipped":false}`, `{"other":1}`} {
		if _, ok := kannukiasynq.SkippedKey([]byte(r)); ok {
			t.Errorf("SkippedKey(%q) reports a skip", r)
		}
	}
}
