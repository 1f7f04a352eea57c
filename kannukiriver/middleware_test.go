package kannukiriver_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/riverqueue/river/rivertype"

	"github.com/kannuki-go/kannuki"
	"github.com/kannuki-go/kannuki/internal/queuetest"
	"github.com/kannuki-go/kannuki/kannukijob"
	"github.com/kannuki-go/kannuki/kannukimem"
	"github.com/kannuki-go/kannuki/kannukiriver"
)

// These tests call the middleware directly with job rows, on the in-memory
// backend: they pin its decisions without River or a database.

func TestKeyIsCanonical(t *testing.T) {
	a, err := kannukiriver.Key("sync", []byte(`{"b":1,"a":[1,2],"c":{"y":true,"x":null}}`))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := kannukiriver.Key("sync", []byte(" {\n \"c\" : {\"x\":null,\"y\":true}, \"a\":[1, 2], \"b\":1 } "))
	if want := `sync:{"a":[1,2],"b":1,"c":{"x":null,"y":true}}`; a != want || b != want {
		t.Fatalf("keys %q and %q, want %q", a, b, want)
	}
	s1, _ := kannukiriver.Key("sync", []byte(`{"ids":["a-b"]}`))
	s2, _ := kannukiriver.Key("sync", []byte(`{"ids":["a","b"]}`))
	if s1 == s2 {
		t.Fatalf(`["a-b"] and ["a","b"] gave the same key %q`, s1)
	}
	if k, _ := kannukiriver.Key("sync", []byte(`{"id":123456789012345678901234567890}`)); k != `sync:{"id":123456789012345678901234567890}` {
		t.Fatalf("large number not kept as written: %q", k)
	}
	for _, bad := range []string{``, `{`, `{"a":1} {"b":2}`, `{"a":1} }`} {
		if _, err := kannukiriver.Key("sync", []byte(bad)); !errors.Is(err, kannuki.ErrInvalidArgument) {
			t.Errorf("args %q: error %v, want ErrInvalidArgument", bad, err)
		}
	}
	if _, err := kannukiriver.Key("", []byte(`{}`)); !errors.Is(err, kannuki.ErrInvalidArgument) {
		t.Errorf("empty kind: error %v, want ErrInvalidArgument", err)
	}
}

func TestLongArgumentsAreHashed(t *testing.T) {
	long := strings.Repeat("x", kannukiriver.MaxKeyArgsLen)
	a, err := kannukiriver.Key("big", []byte(`{"b":"`+long+`","a":1}`))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := kannukiriver.Key("big", []byte(`{"a":1,"b":"`+long+`"}`))
	c, _ := kannukiriver.Key("big", []byte(`{"a":2,"b":"`+long+`"}`))
	if a != b || a == c || !strings.HasPrefix(a, `big:"sha256:`) || len(a) > 100 {
		t.Fatalf("hashed keys %q %q %q", a, b, c)
	}
}

// held runs a job through m and keeps it inside the worker until the
// returned function is called.
func held(t *testing.T, m *kannukiriver.Middleware, job *rivertype.JobRow) (release func()) {
	t.Helper()
	inside, done, result := make(chan struct{}), make(chan struct{}), make(chan error, 1)
	go func() {
		result <- m.Work(context.Background(), job, func(context.Context) error {
			close(inside)
			<-done
			return nil
		})
	}()
	select {
	case <-inside:
	case err := <-result:
		t.Fatalf("first job did not run: %v", err)
	case <-time.After(queuetest.HangGuard):
		t.Fatal("first job did not start")
	}
	return func() {
		close(done)
		if err := <-result; err != nil {
			t.Errorf("first job: %v", err)
		}
	}
}

func row(id int64, kind, args string) *rivertype.JobRow {
	return &rivertype.JobRow{ID: id, Kind: kind, EncodedArgs: []byte(args)}
}

// work runs job through m and reports whether the worker ran and the error.
func work(m *kannukiriver.Middleware, job *rivertype.JobRow) (bool, error) {
	ran := false
	err := m.Work(context.Background(), job, func(context.Context) error { ran = true; return nil })
	return ran, err
}

func TestConflictOutcomes(t *testing.T) {
	ev := queuetest.NewEvents()
	l := kannuki.New(kannukimem.New(), kannuki.Options{Hook: ev})
	first := row(1, "email", `{"to":"a@example.com","n":1}`)
	dup := row(2, "email", `{"n":1,"to":"a@example.com"}`)
	other := row(3, "email", `{"n":2,"to":"a@example.com"}`)

	t.Run("skip", func(t *testing.T) {
		m := kannukiriver.New(l, kannukiriver.Options{})
		release := held(t, m, first)
		defer release()
		if ran, err := work(m, dup); ran || err != nil {
			t.Fatalf("duplicate: ran %v, error %v; want skipped with nil", ran, err)
		}
		if n := ev.Count(kannuki.EventSkipped, `email:{"n":1,"to":"a@example.com"}`); n != 1 {
			t.Fatalf("%d skip events, want 1", n)
		}
		if ran, err := work(m, other); !ran || err != nil {
			t.Fatalf("distinct job: ran %v, error %v", ran, err)
		}
	})
	t.Run("snooze", func(t *testing.T) {
		m := kannukiriver.New(l, kannukiriver.Options{OnConflict: kannukiriver.Snooze, SnoozeAfter: 3 * time.Second})
		release := held(t, m, first)
		defer release()
		ran, err := work(m, dup)
		var snooze *rivertype.JobSnoozeError
		if ran || !errors.As(err, &snooze) || snooze.Duration != 3*time.Second {
			t.Fatalf("duplicate: ran %v, error %v; want a 3s snooze", ran, err)
		}
	})
	t.Run("snooze default", func(t *testing.T) {
		m := kannukiriver.New(l, kannukiriver.Options{OnConflict: kannukiriver.Snooze})
		release := held(t, m, first)
		defer release()
		_, err := work(m, dup)
		var snooze *rivertype.JobSnoozeError
		if !errors.As(err, &snooze) || snooze.Duration != kannukiriver.DefaultSnoozeAfter {
			t.Fatalf("error %v, want a snooze of DefaultSnoozeAfter", err)
		}
	})
	t.Run("cancel", func(t *testing.T) {
		m := kannukiriver.New(l, kannukiriver.Options{OnConflict: kannukiriver.Cancel})
		release := held(t, m, first)
		defer release()
		ran, err := work(m, dup)
		var cancel *rivertype.JobCancelError
		if ran || !errors.As(err, &cancel) || !errors.Is(err, kannukijob.ErrDuplicate) || !strings.Contains(err.Error(), `email:{\"n\":1`) {
			t.Fatalf("duplicate: ran %v, error %v; want a cancellation matching ErrDuplicate naming the key", ran, err)
		}
	})
	t.Run("unknown", func(t *testing.T) {
		m := kannukiriver.New(l, kannukiriver.Options{OnConflict: 9})
		if ran, err := work(m, first); ran || !errors.Is(err, kannuki.ErrInvalidArgument) {
			t.Fatalf("ran %v, error %v; want ErrInvalidArgument", ran, err)
		}
	})
}

func TestKindsAllowList(t *testing.T) {
	l := kannuki.New(kannukimem.New(), kannuki.Options{})
	m := kannukiriver.New(l, kannukiriver.Options{Kinds: []string{"guarded"}})
	if !m.Guards("guarded") || m.Guards("free") {
		t.Fatal("Guards disagrees with Kinds")
	}
	releaseFree := held(t, m, row(1, "free", `{"a":1}`))
	defer releaseFree()
	if ran, err := work(m, row(2, "free", `{"a":1}`)); !ran || err != nil {
		t.Fatalf("unguarded duplicate: ran %v, error %v; want it run", ran, err)
	}
	releaseGuarded := held(t, m, row(3, "guarded", `{"a":1}`))
	defer releaseGuarded()
	if ran, err := work(m, row(4, "guarded", `{"a":1}`)); ran || err != nil {
		t.Fatalf("guarded duplicate: ran %v, error %v; want skipped", ran, err)
	}
}

func TestKeyArgs(t *testing.T) {
	l := kannuki.New(kannukimem.New(), kannuki.Options{})
	type args struct {
		Customer int `json:"customer"`
		Nonce    int `json:"nonce"`
	}
	m := kannukiriver.New(l, kannukiriver.Options{KeyArgs: func(job *rivertype.JobRow) (any, error) {
		var a args
		if err := json.Unmarshal(job.EncodedArgs, &a); err != nil {
			return nil, err
		}
		if a.Customer == 0 {
			return nil, errors.New("no customer")
		}
		return map[string]int{"customer": a.Customer}, nil
	}})
	release := held(t, m, row(1, "bill", `{"customer":7,"nonce":1}`))
	defer release()
	if ran, err := work(m, row(2, "bill", `{"customer":7,"nonce":2}`)); ran || err != nil {
		t.Fatalf("same customer: ran %v, error %v; want skipped", ran, err)
	}
	if ran, err := work(m, row(3, "bill", `{"customer":8,"nonce":1}`)); !ran || err != nil {
		t.Fatalf("other customer: ran %v, error %v; want run", ran, err)
	}
	if ran, err := work(m, row(4, "bill", `{"nonce":1}`)); ran || err == nil || !strings.Contains(err.Error(), "no customer") {
		t.Fatalf("KeyArgs error: ran %v, error %v; want the error", ran, err)
	}
}

func TestSkippedKey(t *testing.T) {
	if _, ok := kannukiriver.SkippedKey(nil); ok {
		t.Error("SkippedKey(nil) reports a skip")
	}
	for _, md := range []string{``, `{}`, `not json`, `{"output":{"kannuki_skipped":false}}`, `{"output":"done"}`} {
		if _, ok := kannukiriver.SkippedKey(&rivertype.JobRow{Metadata: []byte(md)}); ok {
			t.Errorf("metadata %q reports a skip", md)
		}
	}
}
