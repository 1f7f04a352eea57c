package kannukijob_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/kannuki-go/kannuki"
	"github.com/kannuki-go/kannuki/kannukijob"
	"github.com/kannuki-go/kannuki/kannukimem"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestKeyIsCanonicalAndUnambiguous(t *testing.T) {
	a, _ := kannukijob.Key("sync", []string{"a-b"})
	b, _ := kannukijob.Key("sync", []string{"a", "b"})
	if a == b {
		t.Fatalf("[\"a-b\"] and [\"a\",\"b\"] gave the same key %q", a)
	}
	m1, _ := kannukijob.Key("sync", map[string]int{"x": 1, "y": 2})
	m2, _ := kannukijob.Key("sync", map[string]int{"y": 2, "x": 1})
	if m1 != m2 {
		t.Fatalf("equal maps, different keys: %q %q", m1, m2)
	}
	if k, _ := kannukijob.Key("data_sync", []any{"user", 42}); k != `data_sync:["user",42]` {
		t.Fatalf("key %q", k)
	}
	if _, err := kannukijob.Key("", 1); !errors.Is(err, kannuki.ErrInvalidArgument) {
		t.Fatalf("empty kind: %v", err)
	}
	if _, err := kannukijob.Key("k", make(chan int)); !errors.Is(err, kannuki.ErrInvalidArgument) {
		t.Fatalf("unencodable args: %v", err)
	}
}

func TestKeyOfLargeArgumentsIsHashed(t *testing.T) {
	big := strings.Repeat("x", 1<<20) // 1 MiB of arguments
	k1, err := kannukijob.Key("import", []string{big, "a"})
	if err != nil {
		t.Fatal(err)
	}
	k2, _ := kannukijob.Key("import", []string{big, "b"})
	if k1 == k2 || !strings.HasPrefix(k1, `import:"sha256:`) || len(k1) > 100 {
		t.Fatalf("keys of large arguments %.80q and %.80q: want distinct short sha256 keys", k1, k2)
	}
	// The key locks: a Guard runs such a job (the full key would exceed keys.MaxKeyLen).
	g := kannukijob.Guard{Locker: kannuki.New(kannukimem.New(), kannuki.Options{})}
	if o, err := g.Run(context.Background(), "import", []string{big, "a"}, func(context.Context) error { return nil }); o != kannukijob.Ran || err != nil {
		t.Fatalf("Run with 1 MiB of arguments = %v, %v", o, err)
	}
	small, _ := kannukijob.Key("import", []string{"a"})
	if small != `import:["a"]` {
		t.Fatalf("small arguments are hashed too: %q", small)
	}
}

// runWhileHeld runs a second job with the same arguments while a first one
// is inside its lock, and returns what the guard did with the second.
func runWhileHeld(t *testing.T, g kannukijob.Guard) (kannukijob.Outcome, error, bool) {
	t.Helper()
	ctx := context.Background()
	inside, done := make(chan struct{}), make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		_, _ = g.Run(ctx, "sync", []any{"user", 1}, func(context.Context) error {
			close(inside)
			<-done
			return nil
		})
	}()
	<-inside
	var ran atomic.Bool
	type res struct {
		o   kannukijob.Outcome
		err error
	}
	out := make(chan res, 1)
	go func() {
		o, err := g.Run(ctx, "sync", []any{"user", 1}, func(context.Context) error { ran.Store(true); return nil })
		out <- res{o, err}
	}()
	if g.OnConflict == kannukijob.Wait {
		time.Sleep(20 * time.Millisecond) // let the duplicate start waiting; correctness does not depend on it
		close(done)
		r := <-out
		wg.Wait()
		return r.o, r.err, ran.Load()
	}
	r := <-out
	close(done)
	wg.Wait()
	return r.o, r.err, ran.Load()
}

func TestOnConflict(t *testing.T) {
	var skipped atomic.Int32
	hook := kannuki.HookFunc(func(_ context.Context, e kannuki.Event) {
		if e.Kind == kannuki.EventSkipped && e.Key == `jobs/sync:["user",1]` {
			skipped.Add(1)
		}
	})
	l := kannuki.New(kannukimem.New(), kannuki.Options{KeyPrefix: "jobs", Hook: hook})

	o, err, ran := runWhileHeld(t, kannukijob.Guard{Locker: l})
	if o != kannukijob.Skipped || err != nil || ran || skipped.Load() != 1 {
		t.Fatalf("skip: %v %v ran=%v events=%d", o, err, ran, skipped.Load())
	}
	o, err, ran = runWhileHeld(t, kannukijob.Guard{Locker: l, OnConflict: kannukijob.Fail})
	if o != kannukijob.Failed || !errors.Is(err, kannukijob.ErrDuplicate) || ran {
		t.Fatalf("fail: %v %v ran=%v", o, err, ran)
	}
	o, err, ran = runWhileHeld(t, kannukijob.Guard{Locker: l, OnConflict: kannukijob.RetryLater, RetryAfter: time.Minute})
	var rl *kannukijob.RetryLaterError
	if o != kannukijob.Deferred || !errors.As(err, &rl) || rl.After != time.Minute || ran {
		t.Fatalf("retry later: %v %v ran=%v", o, err, ran)
	}
	o, err, ran = runWhileHeld(t, kannukijob.Guard{Locker: l, OnConflict: kannukijob.Wait})
	if o != kannukijob.Ran || err != nil || !ran {
		t.Fatalf("wait: %v %v ran=%v", o, err, ran)
	}
}

func TestDistinctArgumentsRunConcurrently(t *testing.T) {
	l := kannuki.New(kannukimem.New(), kannuki.Options{})
	g := kannukijob.Guard{Locker: l}
	ctx := context.Background()
	o, err := g.Run(ctx, "sync", []string{"a-b"}, func(ctx context.Context) error {
		o, err := g.Run(context.Background(), "sync", []string{"a", "b"}, func(context.Context) error { return nil })
		if o != kannukijob.Ran || err != nil {
			t.Errorf("different arguments were treated as a duplicate: %v %v", o, err)
		}
		return nil
	})
	if o != kannukijob.Ran || err != nil {
		t.Fatal(o, err)
	}
	if _, err := (kannukijob.Guard{}).Run(ctx, "k", nil, func(context.Context) error { return nil }); !errors.Is(err, kannuki.ErrInvalidArgument) {
		t.Fatalf("no locker: %v", err)
	}
}
