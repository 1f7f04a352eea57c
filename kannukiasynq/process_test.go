package kannukiasynq_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/kannuki-go/kannuki/internal/queuetest"
	"github.com/kannuki-go/kannuki/internal/testdb"
	"github.com/kannuki-go/kannuki/kannukiasynq"
)

const (
	// procWork is how long a task's work lasts: long enough that
	// duplicates taken by other servers meet it.
	procWork = 20 * time.Millisecond
	// procConcurrency is below the number of items, so that one server
	// cannot hold every item at once and leave the others only skips.
	procConcurrency = 2
)

func taskItem(task *asynq.Task) (string, error) {
	var p itemPayload
	err := json.Unmarshal(task.Payload(), &p)
	return p.Item, err
}

// Three processes (re-executions of this test binary), each with an asynq
// server, a Locker and a pool of its own, work one queue: no two runs of
// one item overlap, every task completes, and duplicates give way to runs
// in other processes.
func TestAsynqOneRunAcrossProcesses(t *testing.T) {
	if spec, ok := queuetest.ChildSpec(t); ok {
		asynqChild(t, spec)
		return
	}
	env := newAsynqEnv(t)
	q := env.queue("procs")
	children := queuetest.StartChildren(t, 3, map[string]string{"queue": q, "prefix": env.prefix})
	children.WaitReady(t)
	perTask, items := queuetest.Spread(40, 4)
	tasks := make([]task, len(perTask))
	for i, item := range perTask {
		tasks[i] = task{item, q}
	}
	infos := env.finished(t, env.enqueue(t, tasks...))
	tally := children.Stop(t)

	tally.Check(t, len(tasks), items...)
	skipped := 0
	for _, info := range infos {
		if info.State != asynq.TaskStateCompleted {
			t.Errorf("task %s (%s) is %s, want completed (last error %q)", info.ID, info.Payload, info.State, info.LastErr)
		}
		if _, ok := kannukiasynq.SkippedKey(info.Result); ok {
			skipped++
		}
	}
	if n := tally.Skipped(); skipped != n {
		t.Errorf("%d tasks completed as skipped, the children counted %d skips", skipped, n)
	}
}

// asynqChild serves the parent's queue until the parent stops it.
func asynqChild(t *testing.T, spec queuetest.Spec) {
	r := queuetest.NewRunner(t, spec, procWork)
	work := asynq.HandlerFunc(func(ctx context.Context, task *asynq.Task) error {
		item, err := taskItem(task)
		if err != nil {
			return err
		}
		return r.Work(ctx, item)
	})
	// The outermost middleware: the Runner counts what the kannuki
	// middleware inside it did with each task.
	around := func(next asynq.Handler) asynq.Handler {
		return asynq.HandlerFunc(func(ctx context.Context, task *asynq.Task) error {
			item, err := taskItem(task)
			if err != nil {
				return err
			}
			return r.Around(ctx, item, func(ctx context.Context) error { return next.ProcessTask(ctx, task) })
		})
	}
	mw := kannukiasynq.Middleware(newLocker(t, spec.Params["prefix"], nil), kannukiasynq.Options{})
	env := &asynqEnv{opt: asynq.RedisClientOpt{Addr: testdb.RedisAddr()}}
	env.serverN(t, spec.Params["queue"], procConcurrency, work, around, mw)
	r.Serve(t)
}
