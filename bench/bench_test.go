package bench

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kannuki-go/kannuki/internal/testdb"
)

// benchName turns a candidate's name into a sub-benchmark name without
// the separators go test treats specially.
var benchName = strings.NewReplacer("floor: ", "floor-", "reference: ", "ref-", "/", "-", " ", "_", ",", "", "(", "", ")", "", "+", "-", "=", "-", "·", "").Replace

// BenchmarkUncontended times one uncontended lock+unlock cycle per
// iteration for every candidate of the report's section 1: the raw
// floors, Kannuki on every backend (WithLock, empty fn, default options)
// and the Redis peers. Unlike the report, it runs the candidates one
// after another, so compare them within one run only:
//
//	go test -run '^$' -bench Uncontended -count 5
//
// A family whose server is down is skipped (failed with
// KANNUKI_TEST_REQUIRE_DB=1).
func BenchmarkUncontended(b *testing.B) {
	ctx := context.Background()
	env := NewEnv()
	fams := OpenFamilies(ctx, env)
	defer func() {
		for _, f := range fams {
			f.Close()
		}
	}()
	for _, f := range fams {
		if f.Err != nil {
			b.Run(benchName(f.Name), func(b *testing.B) { testdb.Unavailable(b, f.Name, f.Err) })
			continue
		}
		for _, c := range f.Candidates {
			b.Run(benchName(c.Name), func(b *testing.B) {
				cycle, end, err := c.Begin(ctx)
				if err != nil {
					b.Fatal(err)
				}
				defer end()
				for b.Loop() {
					if err := cycle(ctx); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

func TestQuantile(t *testing.T) {
	d := []time.Duration{5, 1, 4, 2, 3, 6, 7, 8, 9, 10}
	for _, tc := range []struct {
		q    float64
		want time.Duration
	}{{0, 1}, {0.5, 5}, {0.99, 10}, {1, 10}, {0.1, 1}, {0.11, 2}} {
		if got := quantile(d, tc.q); got != tc.want {
			t.Errorf("quantile(%v) = %v, want %v", tc.q, got, tc.want)
		}
	}
	if got := quantile(nil, 0.5); got != 0 {
		t.Errorf("quantile(nil) = %v", got)
	}
}

func TestMedianSkipsNaN(t *testing.T) {
	if got := median([]float64{3, nan(), 1, 2}); got != 2 {
		t.Errorf("median = %v, want 2", got)
	}
	if got := median([]float64{4, 1, 2, 3}); got != 2.5 {
		t.Errorf("median = %v, want 2.5", got)
	}
	if got := median([]float64{nan()}); got == got { // NaN != NaN
		t.Errorf("median of NaNs = %v, want NaN", got)
	}
}

func TestRatioTo(t *testing.T) {
	a := &CycleStats{PerBlock: []float64{100, 200, nan()}}
	floor := &CycleStats{PerBlock: []float64{100, 100, 100}}
	if got := a.RatioTo(floor); got != 1.5 {
		t.Errorf("RatioTo = %v, want 1.5 (median of 1 and 2; the failed round skipped)", got)
	}
}

func TestFormat(t *testing.T) {
	for _, tc := range []struct{ got, want string }{
		{count(1234567), "1,234,567"},
		{count(999), "999"},
		{count(-1000), "-1,000"},
		{ms(140 * time.Microsecond), "0.140 ms"},
		{ms(12 * time.Millisecond), "12.00 ms"},
		{ms(0), "–"},
		{ratio(0.954), "0.95×"},
		{ratio(nan()), "–"},
		{bytesIEC(1536), "1.50 KiB"},
		{benchName("floor: database/sql pgx/stdlib, prepared, rows affected"), "floor-database-sql_pgx-stdlib_prepared_rows_affected"},
	} {
		if tc.got != tc.want {
			t.Errorf("got %q, want %q", tc.got, tc.want)
		}
	}
}

// TestHandoffRelay runs short handoff blocks on the in-process backend:
// every recorded handoff went to another goroutine, and blocks end.
func TestHandoffRelay(t *testing.T) {
	var mem Contender
	for _, c := range Contenders() {
		if strings.HasPrefix(c.Name, NameMem) {
			mem = c
		}
	}
	plan := HandoffPlan{Hold: time.Millisecond, Want: 20, WantSlow: 5, Limit: 30 * time.Second, DrainWait: 30 * time.Second}
	for _, w := range []int{1, 4} {
		st := &HandoffStats{Contender: mem, Waiters: w}
		runHandoffBlock(context.Background(), NewEnv(), mem, w, plan, st, 0)
		if st.Errors > 0 || len(st.Samples) != plan.Want {
			t.Fatalf("%d waiters: %d handoffs, %d errors (%v); want %d and none", w, len(st.Samples), st.Errors, st.LastErr, plan.Want)
		}
		for _, d := range st.Samples {
			if d <= 0 {
				t.Fatalf("%d waiters: handoff of %v", w, d)
			}
		}
	}
}

// TestMarkdownEmpty renders a report with nothing measured: every section
// must cope with missing figures.
func TestMarkdownEmpty(t *testing.T) {
	r := &Report{Plan: QuickPlan(), Started: time.Now(), Ended: time.Now(), Command: "true"}
	var b strings.Builder
	if err := r.Markdown(&b); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"# Kannuki benchmarks", "## 1. Uncontended", "## 1b. Uncontended, paired", "## 6. Heap per held lock", "`true`"} {
		if !strings.Contains(b.String(), want) && !strings.Contains(b.String(), strings.Trim(want, "`")) {
			t.Errorf("report lacks %q", want)
		}
	}
}

// TestRunPaired: every Kannuki candidate runs against its own family's
// floor, in blocks of n cycles whose order swaps every round, after one
// warm-up round; candidates without a floor in the family are skipped.
func TestRunPaired(t *testing.T) {
	var order []string
	fake := func(name, kind, floor string) Candidate {
		return Candidate{Name: name, Kind: kind, Floor: floor, Begin: func(context.Context) (func(context.Context) error, func(), error) {
			order = append(order, name)
			return func(context.Context) error { return nil }, func() {}, nil
		}}
	}
	fams := []*Family{{Name: "f", Candidates: []Candidate{
		fake("floor", KindFloor, ""),
		fake("ref", KindReference, "floor"),
		fake("k", KindKannuki, "floor"),
		fake("orphan", KindKannuki, "elsewhere"),
	}}}
	const rounds, n = 4, 3
	ps := RunPaired(context.Background(), fams, rounds, n, func(string) {})
	if len(ps) != 1 || ps[0].Kannuki.Candidate.Name != "k" || ps[0].Floor.Candidate.Name != "floor" {
		t.Fatalf("pairs = %+v, want k against floor only", ps)
	}
	want := []string{"floor", "k", "floor", "k", "k", "floor", "floor", "k", "k", "floor"}
	if !slices.Equal(order, want) {
		t.Errorf("block order = %v, want %v", order, want)
	}
	for _, s := range []*CycleStats{ps[0].Kannuki, ps[0].Floor} {
		if len(s.Samples) != rounds*n || len(s.PerBlock) != rounds {
			t.Errorf("%s: %d samples in %d blocks, want %d in %d", s.Candidate.Name, len(s.Samples), len(s.PerBlock), rounds*n, rounds)
		}
	}
}

// TestRunWatchCost runs the watch's cost section briefly against the real
// servers: every watched backend pairs with itself under NoWatch, both
// complete their cycles without an error.
func TestRunWatchCost(t *testing.T) {
	ps, down := RunWatchCost(context.Background(), NewEnv(), 2, 20, func(string) {})
	for name, err := range down {
		testdb.Unavailable(t, name, err)
	}
	if len(ps) != 3 {
		t.Fatalf("%d pairs, want 3 (pgxv5, pgx/stdlib, MySQL with the Dialer)", len(ps))
	}
	for _, s := range ps {
		for _, c := range []*CycleStats{s.Kannuki, s.Floor} {
			if c.Errors > 0 || len(c.Samples) != 40 {
				t.Errorf("%s: %d samples, %d errors (last %v)", c.Candidate.Name, len(c.Samples), c.Errors, c.LastErr)
			}
		}
		if s.Floor.Candidate.Name != s.Kannuki.Candidate.Name+" NoWatch" {
			t.Errorf("%s paired with %s", s.Kannuki.Candidate.Name, s.Floor.Candidate.Name)
		}
	}
}
