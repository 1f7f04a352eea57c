// Command chaosreport runs Kannuki's chaos suite (the tests of the chaos
// module) and writes RELIABILITY.md from the figures they record: lock
// cycles, overlaps, kills, restarts, time to recover, errors by kind, plus
// the command, the date and the machine.
//
// Run it from the chaos directory:
//
//	go run ./cmd/chaosreport -out ../RELIABILITY.md          # short run (as in CI)
//	go run ./cmd/chaosreport -long -out ../RELIABILITY.md    # long run, fuzzing included
//
// The long run restarts the database servers and fills their
// max_connections: do not run it against servers others are using.
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"runtime"
	"sort"
	"strings"
	"time"

	"github.com/kannuki-go/kannuki/chaos"
)

func main() {
	out := flag.String("out", "../RELIABILITY.md", "write the report to `FILE`")
	long := flag.Bool("long", false, "run the long version (100,000+ cycles, restarts, max_connections, fuzzing)")
	fuzztime := flag.Duration("fuzztime", 0, "fuzz each target for `D` (default 1m with -long, none otherwise)")
	race := flag.Bool("race", true, "run the tests with the race detector")
	run := flag.String("run", "", "only the tests matching `REGEXP` (go test -run)")
	skip := flag.String("skip", "", "leave out the tests matching `REGEXP` (go test -skip)")
	verbose := flag.Bool("v", false, "echo the tests' output")
	flag.Parse()
	if *long && *fuzztime == 0 {
		*fuzztime = time.Minute
	}
	os.Exit(report(options{out: *out, long: *long, fuzztime: *fuzztime, race: *race, run: *run, skip: *skip, verbose: *verbose}))
}

type options struct {
	out      string
	long     bool
	fuzztime time.Duration
	race     bool
	run      string
	skip     string
	verbose  bool
}

// testResult is how one test ended, from go test -json.
type testResult struct {
	Name    string
	Action  string // pass, fail, skip
	Elapsed float64
	Output  []string
}

// fuzzResult is one fuzz target's run.
type fuzzResult struct {
	Name   string
	Passed bool
	Execs  string
	Time   time.Duration
	Tail   string
}

func report(o options) int {
	tmp, err := os.CreateTemp("", "kannuki-chaos-figures-*.jsonl")
	if err != nil {
		fmt.Fprintln(os.Stderr, "chaosreport:", err)
		return 1
	}
	tmp.Close()
	defer os.Remove(tmp.Name())

	args := []string{"test", "-json", "-count=1", "-timeout=90m"}
	if o.race {
		args = append(args, "-race")
	}
	if o.run != "" {
		args = append(args, "-run", o.run)
	}
	if o.skip != "" {
		args = append(args, "-skip", o.skip)
	}
	args = append(args, ".")
	env := append(os.Environ(), chaos.FiguresEnv+"="+tmp.Name())
	if o.long {
		env = append(env, "KANNUKI_CHAOS_LONG=1")
	}
	command := "go " + strings.Join(args, " ")
	if o.long {
		command = "KANNUKI_CHAOS_LONG=1 " + command
	}
	fmt.Fprintf(os.Stderr, "chaosreport: %s\n", command)
	start := time.Now()
	tests, testErr := runTests(args, env, o.verbose)
	took := time.Since(start)

	var fuzz []fuzzResult
	if o.fuzztime > 0 {
		for _, name := range []string{"FuzzKeyDerivation", "FuzzLockerOptions", "FuzzCLIDSN"} {
			fmt.Fprintf(os.Stderr, "chaosreport: fuzzing %s for %s\n", name, o.fuzztime)
			fuzz = append(fuzz, runFuzz(name, o.fuzztime))
		}
	}
	figs, err := chaos.ReadFigures(tmp.Name())
	if err != nil {
		fmt.Fprintln(os.Stderr, "chaosreport:", err)
		return 1
	}
	md := render(o, command, start, took, tests, testErr, fuzz, figs)
	if err := os.WriteFile(o.out, []byte(md), 0o644); err != nil {
		fmt.Fprintln(os.Stderr, "chaosreport:", err)
		return 1
	}
	fmt.Fprintf(os.Stderr, "chaosreport: wrote %s\n", o.out)
	failed := testErr != nil
	for _, t := range tests {
		failed = failed || t.Action == "fail"
	}
	for _, f := range fuzz {
		failed = failed || !f.Passed
	}
	if failed {
		return 1
	}
	return 0
}

// runTests runs go test -json and collects every test's outcome.
func runTests(args, env []string, verbose bool) ([]testResult, error) {
	cmd := exec.Command("go", args...)
	cmd.Env = env
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	byName := map[string]*testResult{}
	var order []string
	sc := bufio.NewScanner(stdout)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		var ev struct {
			Action  string
			Test    string
			Elapsed float64
			Output  string
		}
		if json.Unmarshal(sc.Bytes(), &ev) != nil {
			continue
		}
		if verbose && ev.Output != "" {
			fmt.Fprint(os.Stderr, ev.Output)
		}
		if ev.Test == "" {
			if ev.Action == "output" && !verbose && strings.HasPrefix(ev.Output, "FAIL") {
				fmt.Fprint(os.Stderr, ev.Output)
			}
			continue
		}
		r := byName[ev.Test]
		if r == nil {
			r = &testResult{Name: ev.Test}
			byName[ev.Test] = r
			order = append(order, ev.Test)
		}
		switch ev.Action {
		case "output":
			if len(r.Output) < 400 {
				r.Output = append(r.Output, ev.Output)
			}
		case "pass", "fail", "skip":
			r.Action, r.Elapsed = ev.Action, ev.Elapsed
			if !strings.Contains(ev.Test, "/") {
				fmt.Fprintf(os.Stderr, "chaosreport: %-4s %s (%.1fs)\n", ev.Action, ev.Test, ev.Elapsed)
			}
			if ev.Action == "fail" && !verbose {
				for _, l := range r.Output {
					fmt.Fprint(os.Stderr, l)
				}
			}
		}
	}
	err = cmd.Wait()
	out := make([]testResult, 0, len(order))
	for _, n := range order {
		out = append(out, *byName[n])
	}
	return out, err
}

var execsRe = regexp.MustCompile(`fuzz: elapsed: ([^,]+), execs: (\d+)`)

// runFuzz runs one fuzz target for d.
func runFuzz(name string, d time.Duration) fuzzResult {
	start := time.Now()
	cmd := exec.Command("go", "test", "-run", "^$", "-fuzz", "^"+name+"$", "-fuzztime", d.String(), ".")
	var buf bytes.Buffer
	cmd.Stdout, cmd.Stderr = &buf, &buf
	err := cmd.Run()
	r := fuzzResult{Name: name, Passed: err == nil, Time: time.Since(start)}
	if m := execsRe.FindAllStringSubmatch(buf.String(), -1); len(m) > 0 {
		r.Execs = m[len(m)-1][2]
	}
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) > 15 {
		lines = lines[len(lines)-15:]
	}
	r.Tail = strings.Join(lines, "\n")
	return r
}

func render(o options, command string, start time.Time, took time.Duration, tests []testResult, testErr error, fuzz []fuzzResult, figs []chaos.Figure) string {
	var b strings.Builder
	w := func(format string, a ...any) { fmt.Fprintf(&b, format, a...) }
	mode := "short (as in CI)"
	if o.long {
		mode = "long"
	}
	w("# Kannuki reliability figures\n\n")
	w("Written by `chaos/cmd/chaosreport` from the fault and load suite in `chaos/` (%s run). ", mode)
	w("Every figure below was measured by the run described here; rerun the command to reproduce it.\n\n")
	w("| | |\n|---|---|\n")
	w("| date | %s |\n", start.UTC().Format("2006-01-02 15:04 MST"))
	w("| command | `cd chaos && go run ./cmd/chaosreport%s` → `%s` |\n", flagsOf(o), command)
	w("| duration | %s |\n", took.Round(time.Second))
	w("| machine | %s |\n", machine())
	w("| Go | %s |\n", goVersion())
	for _, f := range figs {
		if f.Backend == "environment" {
			for _, n := range f.Notes {
				w("| server | %s |\n", n)
			}
		}
	}
	passed, failed, skipped := 0, 0, 0
	for _, t := range tests {
		if strings.Contains(t.Name, "/") {
			continue
		}
		switch t.Action {
		case "pass":
			passed++
		case "fail":
			failed++
		case "skip":
			skipped++
		}
	}
	w("| tests | %d passed, %d failed, %d skipped |\n", passed, failed, skipped)
	if testErr != nil && failed == 0 {
		w("| go test | %v |\n", testErr)
	}
	w("\n")

	// Headline figures.
	var cycles, overlaps, kills, termH, termW, left int64
	var recover []string
	restartCases := map[string]bool{}
	for _, f := range figs {
		if strings.HasPrefix(f.Case, "TestOverlap/") {
			cycles += f.Counts["cycles"]
			overlaps += f.Counts["overlaps"]
			kills += f.Counts["sigkills"]
			termH += f.Counts["sessions_terminated_holding"]
			termW += f.Counts["sessions_terminated_waiting"]
			left += f.Counts["locks_left"]
		}
		if strings.HasPrefix(f.Case, "TestRestart/") {
			restartCases[f.Case] = true
			recover = append(recover, fmt.Sprintf("%s %s", f.Backend, ms(f.Millis["time_to_recover"])))
		}
	}
	w("## Summary\n\n")
	w("| figure | value |\n|---|---|\n")
	w("| lock cycles under faults (overlap checker) | %s |\n", num(cycles))
	w("| overlapping holders found | **%d** |\n", overlaps)
	w("| holder processes SIGKILLed | %s |\n", num(kills))
	w("| lock sessions terminated (pg_terminate_backend / KILL) while holding | %s |\n", num(termH))
	w("| lock sessions terminated (or their wait killed) while waiting | %s |\n", num(termW))
	w("| locks left on the servers after the runs | %d |\n", left)
	if restarts := len(restartCases); restarts > 0 {
		w("| database restarts under load | %d (time to recover, by client: %s) |\n", restarts, strings.Join(recover, ", "))
	} else {
		w("| database restarts under load | not run (long run or KANNUKI_CHAOS_RESTART=1) |\n")
	}
	for _, f := range figs {
		if f.Case == "TestLockTableFull" {
			w("| locks lost while the lock table was full | **%d** of %d long-held, %d calls refused with ErrCapacity |\n",
				f.Counts["long_held_lost"]+f.Counts["lost"], f.Counts["long_held"], f.Counts["refused_capacity"])
		}
		if strings.HasPrefix(f.Case, "TestToldLatency/") {
			w("| session kill to the holder told, with the socket watch (%s) | median %s, p99 %s over %d kills |\n",
				f.Backend, ms(f.Millis["watch_median"]), ms(f.Millis["watch_p99"]), f.Counts["kills_watch"])
		}
	}
	w("| leaked goroutines | none (goleak in every process; a leak fails the run) |\n\n")

	overlapSection(w, figs)
	toldSection(w, figs)
	caseSection(w, figs, "TestLockTableFull", "A full lock table",
		"A throwaway PostgreSQL cluster (max_locks_per_transaction 10) whose shared lock table a filler session keeps full (it takes advisory locks until the server refuses one, gives 8 back, and again). The multiplexed pgx Locker first takes 100 long-held locks; then 4 Lockers (kannukipgxv5 multiplexed and dedicated, kannukipg on pgx/stdlib and lib/pq) x 6 goroutines churn 12 keys with tries and short waits. Refusals must match `ErrCapacity` and name `max_locks_per_transaction`; no lock granted may be lost (`lost`, `long_held_lost`) and no two holders may overlap.")
	caseSection(w, figs, "TestRestart/", "Database restarts",
		"Holders keep a lock across a restart of the server (keepalive 200 ms), a waiter queues behind one of them and three goroutines run short cycles. A holder must be told (fn's context canceled with ErrLockLost, the call returning it); calls in flight must end within their bounds with `kannuki:` errors; a fresh pool must lock again. Times are from the start of the restart command.")
	caseSection(w, figs, "TestIdleKillers/", "Idle killers",
		"PostgreSQL `idle_session_timeout` 1.5 s (per session, `options=-c ...`), MariaDB `wait_timeout` 2 s (per session). A keepalive below the timeout keeps the lock; above it, the loss is signalled to fn; with no keepalive, the release reports it.")
	caseSection(w, figs, "TestPoolOfOne/", "Pool of one connection",
		"A held lock pins the pool's only connection: a try on another key, a timed wait and a nested call inside fn must fail clearly and in time (no deadlock), and a queued waiter gets the connection once the holder releases.")
	caseSection(w, figs, "TestMaxConnections/", "Server max_connections reached",
		"Connections are opened from a separate pool until the server refuses one, held for about a second, then closed. Lock calls on a fresh pool must fail clearly and in time, and succeed again after.")
	caseSection(w, figs, "TestDialErrorCause/", "Unreachable server", "")
	inputSection(w, figs)
	fuzzSection(w, fuzz, o)
	resultSection(w, tests)
	methodSection(w)
	return b.String()
}

func flagsOf(o options) string {
	s := ""
	if o.long {
		s += " -long"
	}
	if o.run != "" {
		s += " -run '" + o.run + "'"
	}
	if o.skip != "" {
		s += " -skip '" + o.skip + "'"
	}
	if !o.race {
		s += " -race=false"
	}
	if o.out != "" {
		s += " -out " + o.out
	}
	return s
}

func overlapSection(w func(string, ...any), figs []chaos.Figure) {
	w("## Overlap checker\n\n")
	w("Worker processes (the test binary re-executed) × goroutines contend for a small key set with random timed waits, tries, cancellations at a random moment and deadline-bound waits; holds are 0–1 ms, one in ten up to 40 ms; keepalive every 25 ms. Meanwhile the parent SIGKILLs a random worker process (and starts a replacement) and terminates random lock sessions, holding or waiting. See *Method* for how an overlap is detected.\n\n")
	w("\"Handed over by Relock\" counts, in process 0 (the parent's own workers; the children are killed before they can report), the grants that came from the previous local holder's Relock, the unlock and the next goroutine's try in one statement, among all its grants.\n\n")
	w("| backend | cycles | fn ran | overlaps | SIGKILLs | sessions terminated (holding / waiting) | losses told (by fn's ctx) | overlaps excused: lost / died | locks left | handed over by Relock (process 0) | longest call | run time |\n")
	w("|---|---:|---:|---:|---:|---|---:|---|---:|---|---:|---:|\n")
	var rows []chaos.Figure
	for _, f := range figs {
		if strings.HasPrefix(f.Case, "TestOverlap/") {
			rows = append(rows, f)
		}
	}
	for _, f := range rows {
		c := f.Counts
		w("| %s | %s | %s | **%d** | %d | %d / %d | %d (%d) | %d / %d | %d | %s of %s | %s | %s |\n", f.Backend, num(c["cycles"]), num(c["entered"]), c["overlaps"], c["sigkills"],
			c["sessions_terminated_holding"], c["sessions_terminated_waiting"], f.Errors["lost"], c["lost_signalled_in_fn"], c["excused_lost"], c["excused_died"], c["locks_left"],
			num(c["p0_relocked"]), num(c["p0_acquired"]), ms(f.Millis["longest_call"]), ms(f.Millis["elapsed"]))
	}
	for _, f := range figs {
		if f.Case == "TestOverlapCheckerWorks" {
			w("\nSelf-check: on %s the checker found %d overlaps in %d cycles, as it must.\n", f.Backend, f.Counts["overlaps"], f.Counts["cycles"])
		}
	}
	w("\n### Outcomes of the cycles, by kind\n\n")
	kinds := map[string]bool{}
	for _, f := range rows {
		for k := range f.Errors {
			kinds[k] = true
		}
	}
	names := sortedKeys(kinds)
	w("| outcome |")
	for _, f := range rows {
		w(" %s |", f.Backend)
	}
	w("\n|---|")
	for range rows {
		w("---:|")
	}
	w("\n")
	for _, k := range names {
		w("| %s |", k)
		for _, f := range rows {
			w(" %s |", num(f.Errors[k]))
		}
		w("\n")
	}
	w("\n`ok`: fn ran and the call returned nil. `lost`: fn ran and the call returned ErrLockLost. `fn-ctx-ended`: fn returned because its context was canceled or ran out. `na-*`: a *NotAcquiredError with that reason (`held`: a try found the key held). `acquire-error`: the backend failed while acquiring (typically the session was terminated mid-wait); these are `kannuki:` errors with the driver's cause. An error that does not start with one `kannuki:` and say each thing once (internal/saidonce), or a call that outlived its bound, fails the run.\n\n")
	samples := map[string]string{}
	for _, f := range rows {
		for k, s := range f.Samples {
			if _, ok := samples[k]; !ok {
				samples[k] = f.Backend + ": " + s
			}
		}
	}
	if len(samples) > 0 {
		w("Sample messages:\n\n")
		for _, k := range sortedKeys(samples) {
			w("- `%s` — %s\n", k, oneLine(samples[k]))
		}
		w("\n")
	}
}

// toldSection reports the told-at-once cases: how soon a holder whose
// session the server ended is told, and the overlaps left in the window
// between the server's grant to the next waiter and the holder's news.
func toldSection(w func(string, ...any), figs []chaos.Figure) {
	var lat, ov []chaos.Figure
	for _, f := range figs {
		switch {
		case strings.HasPrefix(f.Case, "TestToldLatency/"):
			lat = append(lat, f)
		case strings.HasPrefix(f.Case, "TestToldOverlap/"):
			ov = append(ov, f)
		}
	}
	if len(lat)+len(ov) == 0 {
		return
	}
	w("## Told at once\n\n")
	w("A held connection that runs no statement must be silent; when the server ends the session (pg_terminate_backend, KILL) it says so on the socket, and the backends' socket watch tells the holder at once. ")
	w("Each case runs with the watch on and off (`NoWatch`) in the same run, with two CPU-bound processes beside it. ")
	w("Server restarts are in \"Database restarts\" below (`last_holder_told_after`, from the start of the restart command). A SIGKILLed holder has nobody left to tell: the kernel closes its socket and the server frees its lock.\n\n")
	if len(lat) > 0 {
		w("Time from sending the kill to the holder's fn context canceled with `ErrLockLost` (4 holders each on a key of its own, holding until told, keepalive 1 s; one kill at a time):\n\n")
		w("| backend | kills (watch) | min | median | p99 | max | kills (NoWatch) | median | p99 |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|\n")
		for _, f := range lat {
			m := f.Millis
			w("| %s | %d | %s | %s | %s | %s | %d | %s | %s |\n", f.Backend, f.Counts["kills_watch"], ms(m["watch_min"]), ms(m["watch_median"]), ms(m["watch_p99"]), ms(m["watch_max"]),
				f.Counts["kills_nowatch"], ms(m["nowatch_median"]), ms(m["nowatch_p99"]))
		}
		w("\n")
	}
	if len(ov) > 0 {
		w("Overlaps under session kills (%s). An overlap is a holder entering fn while another holder of the key is still inside; \"untold\" means the older holder's context was not yet canceled when the newer one entered. ", notesOf(ov))
		w("With the watch, what remains is the window between the server freeing the lock (and granting it to a waiter) and the holder's process reading the news on the socket; fencing closes it.\n\n")
		w("| backend | cycles (watch) | kills | untold overlaps | cycles (NoWatch) | kills | untold overlaps | watch / NoWatch |\n|---|---:|---:|---:|---:|---:|---:|---:|\n")
		for _, f := range ov {
			c := f.Counts
			share := "n/a"
			if n := c["overlaps_untold_nowatch"]; n > 0 {
				share = fmt.Sprintf("%.0f%%", 100*float64(c["overlaps_untold_watch"])/float64(n))
			}
			w("| %s | %s | %d | **%d** | %s | %d | %d | %s |\n", f.Backend, num(c["cycles_watch"]), c["kills_watch"], c["overlaps_untold_watch"],
				num(c["cycles_nowatch"]), c["kills_nowatch"], c["overlaps_untold_nowatch"], share)
		}
		w("\n")
	}
}

// notesOf is the first note of the first figure.
func notesOf(figs []chaos.Figure) string {
	for _, f := range figs {
		if len(f.Notes) > 0 {
			return f.Notes[0]
		}
	}
	return ""
}

func caseSection(w func(string, ...any), figs []chaos.Figure, prefix, title, intro string) {
	var rows []chaos.Figure
	for _, f := range figs {
		if strings.HasPrefix(f.Case, prefix) {
			rows = append(rows, f)
		}
	}
	if len(rows) == 0 {
		return
	}
	sort.SliceStable(rows, func(i, j int) bool { return rows[i].Case < rows[j].Case })
	w("## %s\n\n", title)
	if intro != "" {
		w("%s\n\n", intro)
	}
	w("| case | counts | times | errors by kind |\n|---|---|---|---|\n")
	for _, f := range rows {
		label := strings.TrimPrefix(f.Case, prefix)
		if f.Backend != "" && !strings.Contains(label, f.Backend) {
			label += " (" + f.Backend + ")"
		}
		w("| %s | %s | %s | %s |\n", label, kv(f.Counts), msKV(f.Millis), kv(f.Errors))
	}
	samples := map[string]string{}
	for _, f := range rows {
		for k, s := range f.Samples {
			samples[f.Backend+" "+k] = s
		}
	}
	if len(samples) > 0 {
		w("\nSample messages:\n\n")
		for _, k := range sortedKeys(samples) {
			w("- %s — %s\n", k, oneLine(samples[k]))
		}
	}
	w("\n")
}

func inputSection(w func(string, ...any), figs []chaos.Figure) {
	w("## Bad input and security\n\n")
	w("The corpus (empty, 1 MiB, MaxKeyLen±1, NUL, invalid UTF-8, quotes, `*/`, `--`, `'); DROP TABLE ...; --` and other injections, control characters, long and 4-byte Unicode, RTL override, path traversal, absolute paths) goes through every backend via the Locker, as keys and as key prefixes, and through the CLI binary on the file store, PostgreSQL and MariaDB. Accepted keys must lock, exclude (also through a server-side wait and the keepalive, which carry the key) and hand over like any key; rejected ones fail with ErrInvalidKey before any SQL. Canary tables on both servers must survive. The file store's lock directory sits alone in a sandbox that must hold nothing else afterwards; a symlink planted at a key's lock file must be refused. DSN passwords must appear in no error, slog line, hook event (what kannukiotel copies into spans with KeyAttribute; kannukiprom only labels reasons) or CLI output.\n\n")
	w("| case | figures |\n|---|---|\n")
	for _, f := range figs {
		switch {
		case strings.HasPrefix(f.Case, "TestBadInput/"), strings.HasPrefix(f.Case, "TestCLIBadInput"), strings.HasPrefix(f.Case, "TestSecrets"), strings.HasPrefix(f.Case, "TestLockFileSymlink"):
			w("| %s | %s%s |\n", f.Case, kv(f.Counts), notes(f.Notes))
		}
	}
	w("\n")
}

func fuzzSection(w func(string, ...any), fuzz []fuzzResult, o options) {
	w("## Fuzzing\n\n")
	w("`FuzzKeyDerivation` (every key scheme: deterministic, ErrInvalidKey or a key whose PostgreSQL statements are valid UTF-8 with one well-closed comment, whose MySQL name has at most 64 characters and whose lock file lies directly in the lock directory), `FuzzLockerOptions` (timeouts, default timeouts, keepalive, retry schedules, modes and prefixes on the memory store, contended or not) and `FuzzCLIDSN` (the CLI given DSNs with a marked password: never printed; the host is pinned to 127.0.0.1:1).\n\n")
	if len(fuzz) == 0 {
		w("Not fuzzed in this run (the seed corpora ran as tests); the long run fuzzes each target for a minute.\n\n")
		return
	}
	w("| target | result | executions | time |\n|---|---|---:|---:|\n")
	for _, f := range fuzz {
		res := "pass"
		if !f.Passed {
			res = "**FAIL**"
		}
		w("| %s | %s | %s | %s |\n", f.Name, res, f.Execs, f.Time.Round(time.Second))
	}
	for _, f := range fuzz {
		if !f.Passed {
			w("\n%s:\n\n```\n%s\n```\n", f.Name, f.Tail)
		}
	}
	w("\n")
}

func resultSection(w func(string, ...any), tests []testResult) {
	w("## Test results\n\n| test | result | time |\n|---|---|---:|\n")
	for _, t := range tests {
		// Backend names such as "pg/lib-pq" are one level, not two.
		depth := strings.Count(strings.NewReplacer("pg/pgx", "pg-pgx", "pg/lib", "pg-lib").Replace(t.Name), "/")
		if depth > 1 || t.Action == "" {
			continue
		}
		res := t.Action
		if res == "fail" {
			res = "**FAIL**"
		}
		if res == "skip" {
			for _, l := range t.Output {
				if i := strings.Index(l, ": "); i >= 0 && strings.Contains(l, ".go:") {
					res += ": " + strings.TrimSpace(l[i+2:])
					break
				}
			}
		}
		w("| %s | %s | %.1fs |\n", t.Name, res, t.Elapsed)
	}
	var failures []string
	for _, t := range tests {
		if t.Action != "fail" {
			continue
		}
		for _, l := range t.Output {
			l = strings.TrimSpace(l)
			if strings.Contains(l, ".go:") && !strings.HasPrefix(l, "---") {
				failures = append(failures, t.Name+": "+l)
			}
		}
	}
	if len(failures) > 0 {
		w("\n### Failures\n\n")
		for i, f := range failures {
			if i == 40 {
				w("- ... %d more\n", len(failures)-40)
				break
			}
			w("- %s\n", oneLine(f))
		}
	}
	w("\n")
}

func methodSection(w func(string, ...any)) {
	w(`## Method: how an overlap is detected

Each key has a marker in a file of the run directory: 64 bytes naming the holding inside the critical section, read and written under a per-key mutex (goroutines of one process) and flock(2) (processes; the kernel drops it when a process dies). The first thing fn does is swap its own id in (enter); the last is to take it out if it is still its own (leave). Every process appends its events to its own log with one write(2) per line on an O_APPEND descriptor, so what it wrote survives its SIGKILL: a "saw" line when enter replaced another holding's marker, a "replaced" line when leave found someone else's, and an "out" line with the outcome of every cycle.

Timestamps are not compared: every process has its own monotonic clock, and a tolerance for wall clocks would hide exactly the short overlaps worth finding. Instead, at the end, every pair of holdings that were inside at once is judged with every outcome known. It is an overlap unless one of the two was told its lock was lost (its call returned ErrLockLost, usually through fn's context) or died (its process was SIGKILLed before it reported an outcome). That allows exactly what no lock service can avoid, a holder whose session was terminated and that has not been told yet, and only when it is told afterwards; the one that lost the lock is not always the one that entered first, since a lock can be lost between the grant and fn's first statement. The same checker run on a memory store per process, which excludes nothing across processes, must and does report overlaps.

After the run every process stops cleanly; the parent then waits until the server shows no lock (granted or awaited) on the run's keys: pg_locks for PostgreSQL, IS_USED_LOCK for MariaDB, the kernel's lock table for the file store. Every process checks for leaked goroutines with goleak after closing its pool; the parent's own workers are covered by goleak in TestMain.
`)
}

// Formatting helpers.

func num(n int64) string {
	s := fmt.Sprint(n)
	if n < 10000 {
		return s
	}
	var out []byte
	for i, c := range []byte(s) {
		if i > 0 && (len(s)-i)%3 == 0 {
			out = append(out, ',')
		}
		out = append(out, c)
	}
	return string(out)
}

func ms(v float64) string {
	switch {
	case v >= 10000:
		return fmt.Sprintf("%.1f s", v/1000)
	case v >= 1000:
		return fmt.Sprintf("%.2f s", v/1000)
	}
	return fmt.Sprintf("%.0f ms", v)
}

func kv(m map[string]int64) string {
	var parts []string
	for _, k := range sortedKeys(m) {
		parts = append(parts, fmt.Sprintf("%s %s", k, num(m[k])))
	}
	return strings.Join(parts, ", ")
}

func msKV(m map[string]float64) string {
	var parts []string
	for _, k := range sortedKeys(m) {
		parts = append(parts, fmt.Sprintf("%s %s", k, ms(m[k])))
	}
	return strings.Join(parts, ", ")
}

func notes(n []string) string {
	if len(n) == 0 {
		return ""
	}
	return "; " + strings.Join(n, "; ")
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// oneLine makes a message fit a Markdown list item or table cell.
func oneLine(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	s = strings.ReplaceAll(s, "|", "\\|")
	if len(s) > 300 {
		s = s[:300] + "…"
	}
	return s
}

func machine() string {
	parts := []string{runtime.GOOS + "/" + runtime.GOARCH, fmt.Sprintf("%d CPUs", runtime.NumCPU())}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(l, "model name") {
				if _, v, ok := strings.Cut(l, ":"); ok {
					parts = append(parts, strings.TrimSpace(v))
				}
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		var kb int64
		if _, err := fmt.Sscanf(string(b), "MemTotal: %d kB", &kb); err == nil {
			parts = append(parts, fmt.Sprintf("%d GiB RAM", (kb+(1<<19))>>20))
		}
	}
	if out, err := exec.Command("uname", "-sr").Output(); err == nil {
		parts = append(parts, strings.TrimSpace(string(out)))
	}
	return strings.Join(parts, ", ")
}

func goVersion() string {
	out, err := exec.Command("go", "version").Output()
	if err != nil {
		return runtime.Version()
	}
	return strings.TrimPrefix(strings.TrimSpace(string(out)), "go version ")
}
