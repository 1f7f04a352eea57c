package kannukiriver_test

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/rivermigrate"
	"github.com/riverqueue/river/rivertype"

	"github.com/kannuki-go/kannuki"
	"github.com/kannuki-go/kannuki/internal/queuetest"
	"github.com/kannuki-go/kannuki/kannukiriver"
)

// These tests run real River clients on the local PostgreSQL, each test in
// a schema of its own, with kannukipgxv5 Lockers on pools of their own.

type itemArgs struct {
	Item string `json:"item"`
}

func (itemArgs) Kind() string { return "kannuki_item" }

type itemWorker struct {
	river.WorkerDefaults[itemArgs]
	tr *queuetest.Tracker[int64]
}

func (w *itemWorker) Work(ctx context.Context, job *river.Job[itemArgs]) error {
	return w.tr.Run(ctx, job.ID, job.Args.Item)
}

// snoozes is outermost worker middleware that notes when the layers inside
// it snoozed a job.
type snoozes struct {
	river.MiddlewareDefaults
	mu   sync.Mutex
	last map[int64]time.Time
	n    map[int64]int
}

func (s *snoozes) Work(ctx context.Context, job *rivertype.JobRow, doInner func(context.Context) error) error {
	err := doInner(ctx)
	var snooze *rivertype.JobSnoozeError
	if errors.As(err, &snooze) {
		s.mu.Lock()
		s.last[job.ID] = time.Now() // River schedules the job d after a later instant
		s.n[job.ID]++
		s.mu.Unlock()
	}
	return err
}

// riverEnv is one test's River schema and the pool River uses.
type riverEnv struct {
	pool   *pgxpool.Pool
	schema string
}

func newRiverEnv(t *testing.T) riverEnv {
	t.Helper()
	pool := newPool(t, 10)
	schema := riverSchema(t, pool)
	ctx, cancel := context.WithTimeout(context.Background(), queuetest.HangGuard)
	defer cancel()
	migrator, err := rivermigrate.New(riverpgxv5.New(pool), &rivermigrate.Config{Schema: schema, Logger: quiet()})
	if err != nil {
		t.Fatalf("rivermigrate: %v", err)
	}
	if _, err := migrator.Migrate(ctx, rivermigrate.DirectionUp, nil); err != nil {
		t.Fatalf("migrate: %v", err)
	}
	return riverEnv{pool: pool, schema: schema}
}

func quiet() *slog.Logger { return slog.New(slog.DiscardHandler) }

// client starts a River client working queue with the given middleware,
// stopped at the end of t.
func (e riverEnv) client(t *testing.T, queue string, tr *queuetest.Tracker[int64], mw ...rivertype.Middleware) *river.Client[pgx.Tx] {
	t.Helper()
	workers := river.NewWorkers()
	river.AddWorker(workers, &itemWorker{tr: tr})
	return e.start(t, queue, 10, workers, mw...)
}

// start starts a River client working queue with up to maxWorkers jobs at
// once, stopped at the end of t.
func (e riverEnv) start(t *testing.T, queue string, maxWorkers int, workers *river.Workers, mw ...rivertype.Middleware) *river.Client[pgx.Tx] {
	t.Helper()
	c, err := river.NewClient(riverpgxv5.New(e.pool), &river.Config{
		Schema:            e.schema,
		Queues:            map[string]river.QueueConfig{queue: {MaxWorkers: maxWorkers}},
		Workers:           workers,
		Middleware:        mw,
		FetchCooldown:     10 * time.Millisecond,
		FetchPollInterval: 50 * time.Millisecond,
		Logger:            quiet(),
		TestOnly:          true,
	})
	if err != nil {
		t.Fatalf("river client: %v", err)
	}
	if err := c.Start(context.Background()); err != nil {
		t.Fatalf("river start: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), queuetest.HangGuard)
		defer cancel()
		if err := c.Stop(ctx); err != nil {
			t.Errorf("river stop: %v", err)
		}
	})
	return c
}

type job struct {
	item, queue string
}

func insert(t *testing.T, c *river.Client[pgx.Tx], jobs ...job) []int64 {
	t.Helper()
	params := make([]river.InsertManyParams, len(jobs))
	for i, j := range jobs {
		params[i] = river.InsertManyParams{Args: itemArgs{Item: j.item}, InsertOpts: &river.InsertOpts{Queue: j.queue}}
	}
	res, err := c.InsertMany(context.Background(), params)
	if err != nil {
		t.Fatalf("insert: %v", err)
	}
	ids := make([]int64, len(res))
	for i, r := range res {
		ids[i] = r.Job.ID
	}
	return ids
}

// finished waits until every job is finalized and returns their rows.
func finished(t *testing.T, c *river.Client[pgx.Tx], ids []int64) []*rivertype.JobRow {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), queuetest.HangGuard)
	defer cancel()
	for {
		rows := make([]*rivertype.JobRow, 0, len(ids))
		for _, id := range ids {
			row, err := c.JobGet(ctx, id)
			if err != nil {
				t.Fatalf("job %d: %v", id, err)
			}
			if row.FinalizedAt == nil {
				break
			}
			rows = append(rows, row)
		}
		if len(rows) == len(ids) {
			return rows
		}
		select {
		case <-ctx.Done():
			t.Fatalf("jobs not finished within %s", queuetest.HangGuard)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

const dupKey = `kannuki_item:{"item":"dup"}`

// Duplicates spread over two clients (two queues, two Lockers with pools of
// their own, as two processes would be) are skipped while one of them runs;
// distinct jobs all run.
func TestRiverSkipsRunningDuplicates(t *testing.T) {
	env := newRiverEnv(t)
	ev := queuetest.NewEvents()
	prefix := "kannukiriver-test-" + queuetest.RandomSuffix(t)
	tr := queuetest.NewTracker[int64](func(ctx context.Context, item string, _ int) error {
		if item != "dup" {
			return nil
		}
		// Hold the lock until the 4 other duplicates were skipped: they
		// cannot run while it is held, so only skipping lets this return.
		return ev.WaitFor(ctx, kannuki.EventSkipped, dupKey, 4)
	})
	ca := env.client(t, "a", tr, kannukiriver.New(newLocker(t, prefix, ev), kannukiriver.Options{}))
	env.client(t, "b", tr, kannukiriver.New(newLocker(t, prefix, ev), kannukiriver.Options{}))
	ids := insert(t, ca,
		job{"dup", "a"}, job{"dup", "b"}, job{"x1", "a"}, job{"dup", "a"},
		job{"x2", "b"}, job{"dup", "b"}, job{"dup", "a"}, job{"x3", "b"})
	rows := finished(t, ca, ids)

	runs, overlaps, _ := tr.Snapshot()
	if runs["dup"] != 1 || overlaps["dup"] != 0 {
		t.Fatalf("dup ran %d times with %d overlaps, want 1 and 0", runs["dup"], overlaps["dup"])
	}
	for _, x := range []string{"x1", "x2", "x3"} {
		if runs[x] != 1 {
			t.Errorf("%s ran %d times, want 1", x, runs[x])
		}
	}
	if n := ev.Count(kannuki.EventSkipped, dupKey); n != 4 {
		t.Errorf("%d skip events, want 4", n)
	}
	if n := ev.Count(kannuki.EventSkipped, "x"); n != 0 {
		t.Errorf("%d skip events for distinct jobs, want 0", n)
	}
	skippedIn := map[string]int{}
	var ranIn string
	for _, row := range rows {
		if row.State != rivertype.JobStateCompleted {
			t.Errorf("job %d (%s) is %s, want completed", row.ID, row.EncodedArgs, row.State)
		}
		key, skipped := kannukiriver.SkippedKey(row)
		switch {
		case skipped && key != dupKey:
			t.Errorf("job %d skipped for key %q, want %q", row.ID, key, dupKey)
		case skipped:
			skippedIn[row.Queue]++
		case strings.Contains(string(row.EncodedArgs), `"dup"`):
			ranIn = row.Queue
		}
	}
	if skippedIn["a"]+skippedIn["b"] != 4 {
		t.Fatalf("skipped jobs per queue %v, want 4 in all", skippedIn)
	}
	other := map[string]string{"a": "b", "b": "a"}[ranIn]
	if skippedIn[other] == 0 {
		t.Errorf("no duplicate skipped by the client of queue %q while queue %q ran dup: no cross-client exclusion shown", other, ranIn)
	}
}

// Snoozed duplicates run later, one at a time, each not sooner than the
// snooze delay after it was snoozed, without using an attempt.
func TestRiverSnoozesRunningDuplicates(t *testing.T) {
	const snoozeAfter = 300 * time.Millisecond
	env := newRiverEnv(t)
	ev := queuetest.NewEvents()
	prefix := "kannukiriver-test-" + queuetest.RandomSuffix(t)
	tr := queuetest.NewTracker[int64](func(ctx context.Context, item string, nth int) error {
		if item != "dup" {
			return nil
		}
		if nth == 1 {
			// Hold until both other duplicates found the lock held.
			return ev.WaitFor(ctx, kannuki.EventNotAcquired, dupKey, 2)
		}
		select { // a little work, to give an overlap a chance to show
		case <-time.After(20 * time.Millisecond):
		case <-ctx.Done():
		}
		return nil
	})
	sn := &snoozes{last: map[int64]time.Time{}, n: map[int64]int{}}
	mw := kannukiriver.New(newLocker(t, prefix, ev), kannukiriver.Options{OnConflict: kannukiriver.Snooze, SnoozeAfter: snoozeAfter})
	c := env.client(t, "a", tr, sn, mw)
	ids := insert(t, c, job{"dup", "a"}, job{"dup", "a"}, job{"x1", "a"}, job{"dup", "a"})
	rows := finished(t, c, ids)

	runs, overlaps, started := tr.Snapshot()
	if runs["dup"] != 3 || overlaps["dup"] != 0 || runs["x1"] != 1 {
		t.Fatalf("runs %v overlaps %v, want dup 3 times without overlap and x1 once", runs, overlaps)
	}
	snoozed := 0
	for _, row := range rows {
		if row.State != rivertype.JobStateCompleted || row.Attempt != 1 {
			t.Errorf("job %d is %s after %d attempts, want completed after 1 (snoozes are not attempts)", row.ID, row.State, row.Attempt)
		}
		if _, skipped := kannukiriver.SkippedKey(row); skipped {
			t.Errorf("job %d reported skipped with Snooze", row.ID)
		}
		sn.mu.Lock()
		last, n := sn.last[row.ID], sn.n[row.ID]
		sn.mu.Unlock()
		if n == 0 {
			continue
		}
		snoozed++
		if start := started[row.ID]; start.Before(last.Add(snoozeAfter)) {
			t.Errorf("job %d ran %s after its last snooze, sooner than %s", row.ID, start.Sub(last), snoozeAfter)
		}
	}
	if snoozed < 2 {
		t.Errorf("%d jobs snoozed, want at least 2", snoozed)
	}
	if n := ev.Count(kannuki.EventSkipped, ""); n != 0 {
		t.Errorf("%d skip events with Snooze, want 0", n)
	}
}

// Cancel turns a running duplicate into a cancelled job that keeps an error.
func TestRiverCancelsRunningDuplicates(t *testing.T) {
	env := newRiverEnv(t)
	ev := queuetest.NewEvents()
	prefix := "kannukiriver-test-" + queuetest.RandomSuffix(t)
	tr := queuetest.NewTracker[int64](func(ctx context.Context, item string, _ int) error {
		return ev.WaitFor(ctx, kannuki.EventNotAcquired, dupKey, 1)
	})
	mw := kannukiriver.New(newLocker(t, prefix, ev), kannukiriver.Options{OnConflict: kannukiriver.Cancel})
	c := env.client(t, "a", tr, mw)
	rows := finished(t, c, insert(t, c, job{"dup", "a"}, job{"dup", "a"}))

	runs, overlaps, _ := tr.Snapshot()
	if runs["dup"] != 1 || overlaps["dup"] != 0 {
		t.Fatalf("dup ran %d times with %d overlaps, want 1 and 0", runs["dup"], overlaps["dup"])
	}
	states := map[rivertype.JobState]int{}
	for _, row := range rows {
		states[row.State]++
		if row.State != rivertype.JobStateCancelled {
			continue
		}
		if len(row.Errors) == 0 || !strings.Contains(row.Errors[len(row.Errors)-1].Error, "duplicate job running") {
			t.Errorf("cancelled job %d errors %+v, want the duplicate error", row.ID, row.Errors)
		}
	}
	if states[rivertype.JobStateCompleted] != 1 || states[rivertype.JobStateCancelled] != 1 {
		t.Errorf("job states %v, want one completed and one cancelled", states)
	}
}
