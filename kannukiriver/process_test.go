package kannukiriver_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/rivertype"

	"github.com/kannuki-go/kannuki/internal/queuetest"
	"github.com/kannuki-go/kannuki/kannukiriver"
)

const (
	// procWork is how long a job's work lasts: long enough that
	// duplicates taken by other clients meet it.
	procWork = 20 * time.Millisecond
	// procMaxWorkers is below the number of items, so that one client
	// cannot hold every item at once and leave the others only skips.
	procMaxWorkers = 2
)

// procWorker does a child's jobs through its Runner.
type procWorker struct {
	river.WorkerDefaults[itemArgs]
	r *queuetest.Runner
}

func (w *procWorker) Work(ctx context.Context, job *river.Job[itemArgs]) error {
	return w.r.Work(ctx, job.Args.Item)
}

// around is a child's outermost middleware: the Runner counts what the
// kannuki middleware inside it did with each job.
type around struct {
	river.MiddlewareDefaults
	r *queuetest.Runner
}

func (m *around) Work(ctx context.Context, job *rivertype.JobRow, doInner func(context.Context) error) error {
	var args itemArgs
	if err := json.Unmarshal(job.EncodedArgs, &args); err != nil {
		return err
	}
	return m.r.Around(ctx, args.Item, doInner)
}

// Three processes (re-executions of this test binary), each with a River
// client, a Locker and pools of its own, work one queue of one schema:
// no two runs of one item overlap, every job completes, and duplicates
// give way to runs in other processes.
func TestRiverOneRunAcrossProcesses(t *testing.T) {
	if spec, ok := queuetest.ChildSpec(t); ok {
		riverChild(t, spec)
		return
	}
	env := newRiverEnv(t)
	children := queuetest.StartChildren(t, 3, map[string]string{
		"schema": env.schema,
		"prefix": "kannukiriver-test-" + queuetest.RandomSuffix(t),
	})
	children.WaitReady(t)
	// Insert only: this client works no queue.
	c, err := river.NewClient(riverpgxv5.New(env.pool), &river.Config{Schema: env.schema, Logger: quiet()})
	if err != nil {
		t.Fatalf("river client: %v", err)
	}
	perJob, items := queuetest.Spread(40, 4)
	jobs := make([]job, len(perJob))
	for i, item := range perJob {
		jobs[i] = job{item, river.QueueDefault}
	}
	rows := finished(t, c, insert(t, c, jobs...))
	tally := children.Stop(t)

	tally.Check(t, len(jobs), items...)
	skipped := 0
	for _, row := range rows {
		if row.State != rivertype.JobStateCompleted {
			t.Errorf("job %d (%s) is %s, want completed", row.ID, row.EncodedArgs, row.State)
		}
		if _, ok := kannukiriver.SkippedKey(row); ok {
			skipped++
		}
	}
	if n := tally.Skipped(); skipped != n {
		t.Errorf("%d jobs completed as skipped, the children counted %d skips", skipped, n)
	}
}

// riverChild serves the default queue of the parent's schema until the
// parent stops it.
func riverChild(t *testing.T, spec queuetest.Spec) {
	r := queuetest.NewRunner(t, spec, procWork)
	env := riverEnv{pool: newPool(t, 10), schema: spec.Params["schema"]}
	workers := river.NewWorkers()
	river.AddWorker(workers, &procWorker{r: r})
	mw := kannukiriver.New(newLocker(t, spec.Params["prefix"], nil), kannukiriver.Options{})
	env.start(t, river.QueueDefault, procMaxWorkers, workers, &around{r: r}, mw)
	r.Serve(t)
}
