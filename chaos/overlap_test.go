package chaos

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"fmt"
	mrand "math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/kannuki-go/kannuki/store"

	"github.com/jackc/pgx/v5"
	"github.com/kannuki-go/kannuki"
)

// overlapPlan sizes one backend's run.
type overlapPlan struct {
	children   int           // worker processes besides the parent's own process 0
	goroutines int           // workers per process
	keys       int           // size of the key set
	cycles     int64         // lock cycles to run (all processes together)
	limit      time.Duration // stop then even if cycles were not reached
}

func planFor(kind string) overlapPlan {
	p := overlapPlan{children: 3, goroutines: 4, keys: 3, cycles: 1500, limit: 40 * time.Second}
	if kind == kindBroken {
		return overlapPlan{children: 2, goroutines: 2, keys: 1, cycles: 300, limit: 20 * time.Second}
	}
	if kind == kindPgxv5 || kind == kindMySQL {
		p.cycles = 2000
	}
	if long() {
		p.cycles, p.limit = 25000, 20*time.Minute
		if kind == kindPgxv5 || kind == kindMySQL {
			p.cycles = 35000
		}
	}
	// KANNUKI_CHAOS_CYCLES overrides the number of cycles of every backend,
	// for chasing a rare failure.
	if n, err := strconv.ParseInt(os.Getenv("KANNUKI_CHAOS_CYCLES"), 10, 64); err == nil && n > 0 {
		p.cycles, p.limit = n, max(p.limit, time.Duration(n)*5*time.Millisecond)
	}
	return p
}

// TestOverlap is the overlap checker: processes x goroutines contend for a
// small key set with random waits, tries and cancellations, while holder
// processes are SIGKILLed and lock sessions terminated. No two holders may
// overlap unless the earlier one was told it had lost the lock (or died),
// no lock may be left on the server, and no goroutine leak.
func TestOverlap(t *testing.T) {
	for _, kind := range allKinds {
		t.Run(kind, func(t *testing.T) { runOverlap(t, kind) })
	}
}

// TestOverlapCheckerWorks runs the checker on a store that excludes
// nothing across processes (a memory store per process): it must report
// overlaps, or it proves nothing.
func TestOverlapCheckerWorks(t *testing.T) {
	runOverlap(t, kindBroken)
}

// child is a running worker process.
type childProc struct {
	proc   int
	cmd    *exec.Cmd
	done   chan struct{}
	err    error
	killed bool
	out    string // its output file
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// chaosCounts are the faults injected in a run (by the parent's loop only).
type chaosCounts struct {
	sigkills, termHolders, termWaiters, miss int64
}

func runOverlap(t *testing.T, kind string) {
	plan := planFor(kind)
	run := randHex(4)
	dir := t.TempDir()
	fileDir := ""
	if kind == kindFile {
		fileDir = t.TempDir()
	}
	keys := make([]string, plan.keys)
	for i := range keys {
		keys[i] = fmt.Sprintf("chaos/overlap/%s/k%d", run, i)
	}
	app := "kannuki-chaos-" + run
	base := childSpec{
		Kind: kind, Dir: dir, FileDir: fileDir, Goroutines: plan.goroutines, Keys: keys, AppName: app,
		Keepalive: 25 * time.Millisecond, HoldMax: 40 * time.Millisecond, Parent: os.Getpid(),
	}
	// Skip early, before any process starts, when the database is missing.
	probe := mustBackend(t, backendConfig{Kind: kind, Dir: fileDir, MaxConns: 1, AppName: app + "-probe"})
	_ = probe

	var pg *pgx.Conn
	var my *sql.DB
	switch {
	case isPG(kind):
		pg = pgAdmin(t)
	case kind == kindMySQL:
		my = mysqlAdmin(t)
	}

	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	children := map[int]*childProc{}
	var all []*childProc
	nextProc := 1
	start := func() {
		spec := base
		spec.Proc = nextProc
		spec.Seed = mrand.Uint64()
		nextProc++
		enc, _ := json.Marshal(spec)
		cmd := exec.Command(exe, "-test.run=^$")
		cmd.Env = append(os.Environ(), childEnv+"="+string(enc))
		outPath := filepath.Join(dir, "out-"+strconv.Itoa(spec.Proc)+".txt")
		of, err := os.Create(outPath)
		if err != nil {
			t.Fatal(err)
		}
		cmd.Stdout, cmd.Stderr = of, of
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		if err := cmd.Start(); err != nil {
			of.Close()
			t.Fatalf("start child: %v", err)
		}
		of.Close()
		c := &childProc{proc: spec.Proc, cmd: cmd, done: make(chan struct{}), out: outPath}
		go func() { c.err = cmd.Wait(); close(c.done) }()
		mu.Lock()
		children[c.proc] = c
		all = append(all, c)
		mu.Unlock()
	}
	// Whatever happens, no child outlives the test.
	t.Cleanup(func() {
		for _, c := range all {
			_ = c.cmd.Process.Kill()
			<-c.done
		}
	})
	for range plan.children {
		start()
	}

	// Process 0 runs in this process, so that goleak (TestMain) covers the
	// Locker and the backends after their pools are closed.
	stop0 := make(chan struct{})
	var problems0 []string
	var stats0 kannuki.Stats
	p0done := make(chan struct{})
	go func() {
		defer close(p0done)
		spec := base
		spec.Proc, spec.Seed, spec.Parent = 0, mrand.Uint64(), 0
		problems0, stats0 = runWorkers(spec, stop0)
	}()

	var cc chaosCounts
	startAt := time.Now()
	counter := newLineCounter(dir)
	rng := mrand.New(mrand.NewPCG(mrand.Uint64(), 1))
	ctx := context.Background()
	for {
		if n := counter.count(); n >= plan.cycles || time.Since(startAt) > plan.limit {
			break
		}
		time.Sleep(time.Duration(100+rng.IntN(200)) * time.Millisecond)
		action := rng.IntN(100)
		if kind == kindFile {
			action = 0 // processes are all there is to kill
		}
		if kind == kindBroken {
			continue // no faults: the overlaps must come from the store alone
		}
		switch {
		case action < 30:
			mu.Lock()
			var alive []*childProc
			for _, c := range children {
				select {
				case <-c.done:
				default:
					alive = append(alive, c)
				}
			}
			mu.Unlock()
			if len(alive) == 0 {
				continue
			}
			sort.Slice(alive, func(i, j int) bool { return alive[i].proc < alive[j].proc })
			c := alive[rng.IntN(len(alive))]
			// Only a child that has started its workers is worth killing.
			if _, err := os.Stat(filepath.Join(dir, "ready-"+strconv.Itoa(c.proc))); err != nil {
				continue
			}
			c.killed = true
			_ = c.cmd.Process.Signal(syscall.SIGKILL)
			<-c.done
			mu.Lock()
			delete(children, c.proc)
			mu.Unlock()
			cc.sigkills++
			start()
		case action < 75:
			if terminate(ctx, t, pg, my, keys, true, rng) {
				cc.termHolders++
			} else {
				cc.miss++
			}
		default:
			if terminate(ctx, t, pg, my, keys, false, rng) {
				cc.termWaiters++
			} else {
				cc.miss++
			}
		}
	}
	elapsed := time.Since(startAt)

	// Stop everyone and wait, with a goroutine dump of any child that hangs.
	if err := os.WriteFile(filepath.Join(dir, "stop"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	close(stop0)
	select {
	case <-p0done:
	case <-time.After(callBound + store.DefaultReleaseTimeout + hangGuard):
		t.Fatal("process 0 did not stop: a lock call hangs")
	}
	for _, p := range problems0 {
		t.Errorf("process 0: %s", p)
	}
	mu.Lock()
	running := make([]*childProc, 0, len(children))
	for _, c := range children {
		running = append(running, c)
	}
	mu.Unlock()
	for _, c := range running {
		select {
		case <-c.done:
		case <-time.After(callBound + store.DefaultReleaseTimeout + 2*hangGuard):
			_ = c.cmd.Process.Signal(syscall.SIGQUIT) // goroutine dump into its output
			select {
			case <-c.done:
			case <-time.After(5 * time.Second):
				_ = c.cmd.Process.Kill()
				<-c.done
			}
			t.Errorf("child %d did not stop: a lock call hangs\n%s", c.proc, tail(c.out, 200))
			continue
		}
		if c.err != nil {
			t.Errorf("child %d: %v\n%s", c.proc, c.err, tail(c.out, 60))
		}
	}
	killed := map[int]bool{}
	for _, c := range all {
		if c.killed {
			killed[c.proc] = true
		}
	}

	rep, err := reconcile(dir, killed)
	if err != nil {
		t.Fatal(err)
	}
	if kind == kindBroken {
		if len(rep.overlaps) == 0 {
			t.Fatalf("the checker found no overlap in %d cycles on a store that excludes nothing across processes", rep.cycles)
		}
		t.Logf("the checker found %d overlaps in %d cycles on the broken store, e.g. %s", len(rep.overlaps), rep.cycles, rep.overlaps[0])
		record(t, Figure{Backend: "memory store per process (excludes nothing across processes)", Counts: map[string]int64{"cycles": rep.cycles, "overlaps": int64(len(rep.overlaps))},
			Notes: []string{"self-check: the overlap checker must find overlaps here"}})
		return
	}
	for _, o := range rep.overlaps {
		t.Errorf("OVERLAP: %s", o)
	}
	for _, u := range rep.unclear {
		t.Errorf("unclear error (no \"kannuki:\" prefix or nil error without fn): %s", u)
	}
	if rep.hangs > 0 {
		t.Errorf("%d calls outlived their bound by more than %s", rep.hangs, hangGuard)
	}

	// Nothing may be left on the server.
	left := leftover(t, kind, pg, my, keys, fileDir)

	counts := map[string]int64{
		"cycles": rep.cycles, "entered": rep.entered, "overlaps": int64(len(rep.overlaps)),
		"processes": int64(len(all) + 1), "goroutines_per_process": int64(plan.goroutines), "keys": int64(plan.keys),
		"sigkills": cc.sigkills, "sessions_terminated_holding": cc.termHolders, "sessions_terminated_waiting": cc.termWaiters,
		"excused_lost": rep.excusedLost, "excused_died": rep.excusedDied, "lost_signalled_in_fn": rep.lostInFn,
		"locks_left": int64(left), "hangs": int64(rep.hangs),
		// Process 0's Locker (the children's die unreported): grants, and
		// those handed over in the process by a Relock.
		"p0_acquired": stats0.Acquired, "p0_relocked": stats0.Relocked,
	}
	t.Logf("%s: %d cycles (%d entered) in %s, %d overlaps, %d SIGKILLs, %d holder / %d waiter sessions terminated; outcomes %v",
		kind, rep.cycles, rep.entered, elapsed.Round(time.Millisecond), len(rep.overlaps), cc.sigkills, cc.termHolders, cc.termWaiters, rep.outcomes)
	for k, s := range rep.samples {
		t.Logf("sample %s: %s", k, s)
	}
	if rep.cycles < plan.cycles {
		t.Logf("note: %d cycles within the %s limit (plan %d)", rep.cycles, plan.limit, plan.cycles)
	}
	record(t, Figure{
		Backend: kind, Counts: counts, Errors: rep.outcomes, Samples: rep.samples,
		Millis: map[string]float64{"elapsed": float64(elapsed.Milliseconds()), "longest_call": rep.longest},
		Notes:  []string{fmt.Sprintf("keepalive %s, holds up to %s, 4 call styles (timed wait, try, canceled, deadline-bound wait)", base.Keepalive, base.HoldMax)},
	})
}

// record adds t's name to f and records it.
func record(t *testing.T, f Figure) {
	t.Helper()
	f.Case = t.Name()
	if err := Record(f); err != nil {
		t.Errorf("record figures: %v", err)
	}
}

// terminate ends one lock session of the run: a holder (holding) or a
// waiter. It reports whether it found one.
func terminate(ctx context.Context, t *testing.T, pg *pgx.Conn, my *sql.DB, keys []string, holding bool, rng *mrand.Rand) bool {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	switch {
	case pg != nil:
		pids, err := pgLockPIDs(ctx, pg, keys, holding)
		if err != nil {
			t.Errorf("pg_locks: %v", err)
			return false
		}
		if len(pids) == 0 {
			return false
		}
		var ok bool
		if err := pg.QueryRow(ctx, "SELECT pg_terminate_backend($1)", pids[rng.IntN(len(pids))]).Scan(&ok); err != nil {
			t.Errorf("pg_terminate_backend: %v", err)
		}
		return ok
	case my != nil:
		var ids []int64
		var err error
		if holding {
			ids, err = mysqlHolders(ctx, my, keys)
		} else {
			ids, err = mysqlWaiters(ctx, my, keys)
		}
		if err != nil {
			t.Errorf("find MariaDB sessions: %v", err)
			return false
		}
		if len(ids) == 0 {
			return false
		}
		stmt := "KILL "
		if !holding && rng.IntN(2) == 0 {
			stmt = "KILL QUERY " // ends the wait, keeps the session
		}
		_, err = my.ExecContext(ctx, stmt+strconv.FormatInt(ids[rng.IntN(len(ids))], 10))
		return err == nil // 1094: gone meanwhile
	}
	return false
}

// mysqlWaiters returns the sessions waiting in GET_LOCK for the run's keys
// (Kannuki's wait statement shows the name as a hex literal).
func mysqlWaiters(ctx context.Context, db *sql.DB, keys []string) ([]int64, error) {
	// The keys share everything up to the last character: the hex of that
	// prefix starts every one of their literals.
	prefix := strings.ToUpper(hex.EncodeToString([]byte(keys[0][:len(keys[0])-1])))
	rows, err := db.QueryContext(ctx, "SELECT ID FROM information_schema.PROCESSLIST WHERE STATE = 'User lock' AND UPPER(INFO) LIKE ?", "%X'"+prefix+"%")
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var ids []int64
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			return nil, err
		}
		ids = append(ids, id)
	}
	return ids, rows.Err()
}

// leftover waits (up to a guard) for the server to hold none of keys, and
// returns how many are still held or awaited then.
func leftover(t *testing.T, kind string, pg *pgx.Conn, my *sql.DB, keys []string, fileDir string) int {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		n := 0
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		switch {
		case pg != nil:
			for _, granted := range []bool{true, false} {
				pids, err := pgLockPIDs(ctx, pg, keys, granted)
				if err != nil {
					t.Errorf("pg_locks: %v", err)
				}
				n += len(pids)
			}
		case my != nil:
			ids, err := mysqlHolders(ctx, my, keys)
			if err != nil {
				t.Errorf("IS_USED_LOCK: %v", err)
			}
			n = len(ids)
		case kind == kindFile:
			b := mustBackend(t, backendConfig{Kind: kindFile, Dir: fileDir})
			l := kannuki.New(b, kannuki.Options{})
			for _, k := range keys {
				if held, err := l.Held(ctx, k); err != nil || held {
					n++
				}
			}
		}
		cancel()
		if n == 0 {
			return 0
		}
		if time.Now().After(deadline) {
			t.Errorf("%d locks of the run still held or awaited on the server 30s after every process stopped", n)
			return n
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// lineCounter counts the lines of the run's event logs as they grow: an
// estimate of the cycles run so far, to know when to stop.
type lineCounter struct {
	dir  string
	offs map[string]int64
	n    int64
}

func newLineCounter(dir string) *lineCounter { return &lineCounter{dir: dir, offs: map[string]int64{}} }

func (c *lineCounter) count() int64 {
	files, _ := filepath.Glob(filepath.Join(c.dir, "events-*.jsonl"))
	buf := make([]byte, 64<<10)
	for _, f := range files {
		fh, err := os.Open(f)
		if err != nil {
			continue
		}
		off := c.offs[f]
		for {
			n, err := fh.ReadAt(buf, off)
			c.n += int64(bytes.Count(buf[:n], []byte{'\n'}))
			off += int64(n)
			if err != nil || n == 0 {
				break
			}
		}
		c.offs[f] = off
		fh.Close()
	}
	return c.n
}

// tail returns the last n lines of a file.
func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(string(b), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// report is what reconcile found in a run's event logs.
type report struct {
	cycles, entered          int64
	excusedLost, excusedDied int64
	lostInFn                 int64
	hangs                    int
	longest                  float64
	overlaps                 []string
	unclear                  []string
	outcomes                 map[string]int64
	samples                  map[string]string
}

// reconcile reads every process's events and judges each time a holder
// found another's marker (see ledger): it is an overlap unless that other
// holding ended with ErrLockLost, or its process was SIGKILLed before it
// reported an outcome.
func reconcile(dir string, killed map[int]bool) (*report, error) {
	files, err := filepath.Glob(filepath.Join(dir, "events-*.jsonl"))
	if err != nil {
		return nil, err
	}
	r := &report{outcomes: map[string]int64{}, samples: map[string]string{}}
	outs := map[string]event{}
	var found []event
	for _, f := range files {
		fh, err := os.Open(f)
		if err != nil {
			return nil, err
		}
		sc := bufio.NewScanner(fh)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			var e event
			if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
				// A SIGKILL cannot cut a write(2) to a local file, so a
				// torn line is a harness bug.
				fh.Close()
				return nil, fmt.Errorf("%s: %w: %q", f, err, sc.Text())
			}
			switch e.T {
			case "out":
				outs[e.ID] = e
				r.cycles++
				r.outcomes[e.Out]++
				if e.Out == outOK || e.Out == outLost || e.Out == outFnCtx || e.Out == outRelease || e.Out == outEntered {
					r.entered++
				}
				if e.Out == outLost && e.InFn {
					r.lostInFn++
				}
				if e.Err != "" {
					if _, ok := r.samples[e.Out]; !ok {
						r.samples[e.Out] = e.Err
					}
				}
				if e.Out == outUnclear {
					r.unclear = append(r.unclear, e.ID+": "+e.Err)
				}
				if e.Hang {
					r.hangs++
				}
				r.longest = max(r.longest, e.Ms)
			default:
				found = append(found, e)
			}
		}
		fh.Close()
		if err := sc.Err(); err != nil {
			return nil, err
		}
	}
	judged := map[[2]string]bool{}
	for _, e := range found {
		// earlier is the holding that was (or claimed to be) inside when
		// later came in.
		earlier, later := e.Prev, e.ID
		if e.T == "replaced" {
			earlier, later = e.ID, e.Prev
		}
		pair := [2]string{earlier, later}
		if judged[pair] {
			continue
		}
		judged[pair] = true
		// Two holders were inside at once. That is allowed only when one
		// of them had lost the lock and was told so (its call returned
		// ErrLockLost) or died: the one that lost it need not be the one
		// that entered first, since a lock can be lost between the grant
		// and fn's first statement.
		eo, eok := outs[earlier]
		lo, lok := outs[later]
		switch {
		case eok && eo.Out == outLost, lok && lo.Out == outLost:
			r.excusedLost++
		case !eok && killed[procOf(earlier)], !lok && killed[procOf(later)]:
			r.excusedDied++
		default:
			r.overlaps = append(r.overlaps, fmt.Sprintf("key k%d: %s entered while %s was inside; %s ended %s, %s ended %s; neither was told its lock was lost (context ended before fn: %v)",
				e.Key, later, earlier, earlier, describe(earlier, eo, eok, killed), later, describe(later, lo, lok, killed), e.Dead))
		}
	}
	return r, nil
}

// describe tells how a holding ended, for an overlap message.
func describe(id string, o event, ok bool, killed map[int]bool) string {
	switch {
	case ok && o.Err != "":
		return fmt.Sprintf("%q (%s)", o.Out, o.Err)
	case ok:
		return fmt.Sprintf("%q", o.Out)
	case killed[procOf(id)]:
		return "in a killed process"
	}
	return "without an outcome although its process was not killed"
}

func procOf(id string) int {
	p, _, _ := strings.Cut(id, ".")
	n, err := strconv.Atoi(p)
	if err != nil {
		return -1
	}
	return n
}
