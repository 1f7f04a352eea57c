package kannukiotel_test

import (
	"context"
	"errors"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // database/sql driver "pgx"
	"github.com/kannuki-go/kannuki"
	"github.com/kannuki-go/kannuki/internal/hooktest"
	"github.com/kannuki-go/kannuki/kannukiotel"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// uniqueKey is a key no other test (or concurrent test run) uses.
func uniqueKey(t testing.TB) string { return hooktest.UniqueKey(t, "kannukiotel-test") }

func TestTraffic(t *testing.T) {
	env := hooktest.NewEnv(t, "pgx")
	r := newRig(t, kannukiotel.Options{DBSystem: "postgresql", SpanHold: true})
	rec := &hooktest.Recorder{}
	l := kannuki.New(env.Backend, kannuki.Options{
		// One Locker plays several processes: its callers must queue in
		// PostgreSQL, where the test watches them, not in the local queue.
		NoLocalQueue:      true,
		Hook:              kannuki.Hooks(rec, r.hook),
		KeepaliveInterval: 20 * time.Millisecond,
	})
	key := uniqueKey(t)
	ctx, parent := r.tp.Tracer("test").Start(context.Background(), "request")

	kept := hooktest.Traffic(ctx, t, env, l, key, func() {
		m := r.collect(t)
		if held, waiting := m.sum(t, "kannuki.lock.held"), m.sum(t, "kannuki.lock.waiting"); held != 1 || waiting != 1 {
			t.Errorf("while the waiter waits: held %d, waiting %d; want 1, 1", held, waiting)
		}
	})
	parent.End()

	hooktest.CheckSteps(t, rec)
	if w := rec.Of("waiter")[1].Wait; w < kept {
		t.Errorf("waiter's Event.Wait %s < %s the holder kept the lock", w, kept)
	}
	if h := rec.Of("holder")[2].Hold; h < kept {
		t.Errorf("holder's Event.Hold %s < %s it kept the lock", h, kept)
	}

	t.Run("metrics", func(t *testing.T) {
		m := r.collect(t)
		outcome := kannukiotel.AttrOutcome.String
		for o, want := range map[string]int64{"acquired": 3, "held": 1, "timeout": 1, "canceled": 1, "deadlock": 0, "error": 0} {
			if got := m.sum(t, "kannuki.lock.acquisitions", outcome(o)); got != want {
				t.Errorf("acquisitions %s = %d, want %d", o, got, want)
			}
		}
		if got := m.sum(t, "kannuki.lock.held"); got != 0 {
			t.Errorf("held at the end = %d, want 0", got)
		}
		if got := m.sum(t, "kannuki.lock.waiting"); got != 0 {
			t.Errorf("waiting at the end = %d, want 0", got)
		}
		if got := m.sum(t, "kannuki.lock.lost"); got != 1 {
			t.Errorf("lost = %d, want 1", got)
		}
		if n, maxWait := m.hist(t, "kannuki.lock.wait.duration", outcome("acquired")); n != 3 || maxWait < kept.Seconds() {
			t.Errorf("wait of acquired: %d values, max %gs; want 3, max >= %gs", n, maxWait, kept.Seconds())
		}
		if n, _ := m.hist(t, "kannuki.lock.wait.duration"); n != 6 {
			t.Errorf("wait histogram has %d values, want 6", n)
		}
		if n, maxHold := m.hist(t, "kannuki.lock.hold.duration"); n != 3 || maxHold < kept.Seconds() {
			t.Errorf("hold: %d values, max %gs; want 3, max >= %gs", n, maxHold, kept.Seconds())
		}
		for name, sets := range m.attributeSets() {
			for _, s := range sets {
				if v, _ := s.Value(kannukiotel.AttrDBSystem); v.AsString() != "postgresql" {
					t.Errorf("%s: db.system.name %q", name, v.String())
				}
				if v, _ := s.Value(kannukiotel.AttrMode); v.AsString() != "exclusive" {
					t.Errorf("%s: mode %q", name, v.String())
				}
			}
		}
		noKeyInMetrics(t, m, key)
	})

	t.Run("spans", func(t *testing.T) {
		byOutcome := map[string][]tracetest.SpanStub{}
		var holds []tracetest.SpanStub
		for _, sp := range r.spans() {
			if sp.InstrumentationScope.Name != kannukiotel.ScopeName {
				continue // the test's own parent span
			}
			if where := spanMentions(sp, key); where != "" {
				t.Errorf("span %s shows the key in its %s without KeyAttribute", sp.Name, where)
			}
			if sp.Parent.SpanID() != parent.SpanContext().SpanID() {
				t.Errorf("span %s is not a child of the caller's span", sp.Name)
			}
			if attr(sp, kannukiotel.AttrDBSystem) != "postgresql" || attr(sp, kannukiotel.AttrMode) != "exclusive" {
				t.Errorf("span %s attributes %v", sp.Name, sp.Attributes)
			}
			switch sp.Name {
			case kannukiotel.SpanAcquire:
				o := attr(sp, kannukiotel.AttrOutcome)
				byOutcome[o] = append(byOutcome[o], sp)
			case kannukiotel.SpanHold:
				holds = append(holds, sp)
			default:
				t.Errorf("unexpected span %s", sp.Name)
			}
		}
		for o, want := range map[string]int{"acquired": 3, "held": 1, "timeout": 1, "canceled": 1} {
			if len(byOutcome[o]) != want {
				t.Errorf("%d acquire spans with outcome %s, want %d", len(byOutcome[o]), o, want)
			}
			for _, sp := range byOutcome[o] {
				wantCode := codes.Error
				if o == "acquired" || o == "held" {
					wantCode = codes.Unset
				}
				if sp.Status.Code != wantCode {
					t.Errorf("acquire span %s: status %v, want %v", o, sp.Status, wantCode)
				}
			}
		}
		var longest time.Duration
		for _, sp := range byOutcome["acquired"] {
			longest = max(longest, sp.EndTime.Sub(sp.StartTime))
		}
		if longest < kept {
			t.Errorf("longest acquire span %s < %s the holder kept the lock", longest, kept)
		}
		ends := map[string]int{}
		for _, sp := range holds {
			end := attr(sp, kannukiotel.AttrEnd)
			ends[end]++
			if (end == "lost") != (sp.Status.Code == codes.Error) {
				t.Errorf("hold span %s: status %v", end, sp.Status)
			}
		}
		if ends["released"] != 2 || ends["lost"] != 1 {
			t.Errorf("hold spans by end %v, want released 2, lost 1", ends)
		}
	})
}

// TestKeyAttribute: with the opt-in the key is on spans, never on metrics.
func TestKeyAttribute(t *testing.T) {
	env := hooktest.NewEnv(t, "pgx")
	r := newRig(t, kannukiotel.Options{KeyAttribute: true, SpanHold: true})
	l := kannuki.New(env.Backend, kannuki.Options{Hook: r.hook})
	key := uniqueKey(t)
	ctx := context.Background()

	h, err := l.Acquire(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.WithLock(ctx, key, hooktest.Nothing, kannuki.Timeout(time.Millisecond)); !errors.Is(err, kannuki.ErrNotAcquired) {
		t.Fatalf("WithLock while held = %v", err)
	}
	if err := h.Release(ctx); err != nil {
		t.Fatal(err)
	}

	spans := r.spans()
	if len(spans) != 3 {
		t.Fatalf("%d spans, want 3 (two acquisitions, one hold)", len(spans))
	}
	for _, sp := range spans {
		if got := attr(sp, kannukiotel.AttrKey); got != key {
			t.Errorf("span %s: %s = %q, want %q", sp.Name, kannukiotel.AttrKey, got, key)
		}
		if attr(sp, kannukiotel.AttrDBSystem) != "" {
			t.Errorf("span %s has db.system.name though Options.DBSystem is empty", sp.Name)
		}
		if attr(sp, kannukiotel.AttrOutcome) == "timeout" && len(sp.Events) == 0 {
			t.Errorf("timeout span without the error event: %+v", sp)
		}
	}
	noKeyInMetrics(t, r.collect(t), key)
}
