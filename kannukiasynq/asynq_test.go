package kannukiasynq_test

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/kannuki-go/kannuki"
	"github.com/kannuki-go/kannuki/internal/queuetest"
	"github.com/kannuki-go/kannuki/internal/testdb"
	"github.com/kannuki-go/kannuki/kannukiasynq"
	"github.com/kannuki-go/kannuki/kannukijob"
)

// These tests run real asynq servers on the local Redis, each test on queues
// of its own, with kannukipgxv5 Lockers on PostgreSQL pools of their own.

const taskType = "kannuki:item"

type itemPayload struct {
	Item string `json:"item"`
}

// tracker records what the handlers did (see queuetest.Tracker), by
// task id; it is the tests' asynq.Handler.
type tracker struct{ *queuetest.Tracker[string] }

func newTracker(work func(ctx context.Context, item string, nth int) error) *tracker {
	return &tracker{queuetest.NewTracker[string](work)}
}

func (tr *tracker) ProcessTask(ctx context.Context, t *asynq.Task) error {
	var p itemPayload
	if err := json.Unmarshal(t.Payload(), &p); err != nil {
		return err
	}
	id, _ := asynq.GetTaskID(ctx)
	return tr.Run(ctx, id, p.Item)
}

// deferrals is outermost middleware that notes when the layers inside it
// deferred a task with a RetryLaterError.
type deferrals struct {
	mu   sync.Mutex
	last map[string]time.Time
	n    map[string]int
}

func (d *deferrals) middleware(next asynq.Handler) asynq.Handler {
	return asynq.HandlerFunc(func(ctx context.Context, t *asynq.Task) error {
		err := next.ProcessTask(ctx, t)
		var rl *kannukijob.RetryLaterError
		if errors.As(err, &rl) {
			id, _ := asynq.GetTaskID(ctx)
			d.mu.Lock()
			d.last[id] = time.Now() // asynq computes the retry time at a later instant
			d.n[id]++
			d.mu.Unlock()
		}
		return err
	})
}

type quietLogger struct{}

func (quietLogger) Debug(...any) {}
func (quietLogger) Info(...any)  {}
func (quietLogger) Warn(...any)  {}
func (quietLogger) Error(...any) {}
func (quietLogger) Fatal(...any) {}

// asynqEnv is one test's queues on the local Redis.
type asynqEnv struct {
	opt    asynq.RedisClientOpt
	prefix string // of the queue names and of the lock keys
	client *asynq.Client
	insp   *asynq.Inspector
}

// newAsynqEnv connects to Redis and removes the test's queues (every key
// that names them) at the end of t, after the servers stopped.
func newAsynqEnv(t *testing.T) *asynqEnv {
	t.Helper()
	rc := newRedis(t)
	e := &asynqEnv{opt: asynq.RedisClientOpt{Addr: testdb.RedisAddr()}, prefix: "kannukiasynq-" + queuetest.RandomSuffix(t)}
	e.client = asynq.NewClient(e.opt)
	e.insp = asynq.NewInspector(e.opt)
	t.Cleanup(func() {
		queues, _ := e.insp.Queues()
		for _, q := range queues {
			if len(q) > len(e.prefix) && q[:len(e.prefix)] == e.prefix {
				if err := e.insp.DeleteQueue(q, true); err != nil {
					t.Errorf("delete queue %s: %v", q, err)
				}
			}
		}
		_ = e.insp.Close()
		_ = e.client.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		var keys []string // stats and anything else left
		it := rc.Scan(ctx, 0, "asynq:{"+e.prefix+"*", 100).Iterator()
		for it.Next(ctx) {
			keys = append(keys, it.Val())
		}
		err := it.Err()
		if err == nil && len(keys) > 0 {
			err = rc.Del(ctx, keys...).Err()
		}
		if err != nil {
			t.Errorf("clean up Redis keys: %v", err)
		}
	})
	return e
}

func (e *asynqEnv) queue(name string) string { return e.prefix + "-" + name }

// server starts an asynq server on queue with the given middleware, shut
// down at the end of t.
func (e *asynqEnv) server(t *testing.T, queue string, h asynq.Handler, mw ...asynq.MiddlewareFunc) {
	t.Helper()
	e.serverN(t, queue, 10, h, mw...)
}

// serverN is server with up to concurrency tasks at once.
func (e *asynqEnv) serverN(t *testing.T, queue string, concurrency int, h asynq.Handler, mw ...asynq.MiddlewareFunc) {
	t.Helper()
	srv := asynq.NewServer(e.opt, asynq.Config{
		Concurrency:              concurrency,
		Queues:                   map[string]int{queue: 1},
		TaskCheckInterval:        20 * time.Millisecond,
		DelayedTaskCheckInterval: 50 * time.Millisecond,
		RetryDelayFunc:           kannukiasynq.RetryDelay(nil),
		IsFailure:                kannukiasynq.IsFailure(nil),
		ShutdownTimeout:          queuetest.HangGuard,
		Logger:                   quietLogger{},
	})
	mux := asynq.NewServeMux()
	mux.Use(mw...)
	mux.Handle(taskType, h)
	if err := srv.Start(mux); err != nil {
		t.Fatalf("asynq start: %v", err)
	}
	t.Cleanup(srv.Shutdown)
}

type task struct{ item, queue string }

// taskRef names an enqueued task.
type taskRef struct{ id, queue string }

func (e *asynqEnv) enqueue(t *testing.T, tasks ...task) []taskRef {
	t.Helper()
	ids := make([]taskRef, len(tasks))
	for i, tk := range tasks {
		payload, _ := json.Marshal(itemPayload{Item: tk.item})
		info, err := e.client.Enqueue(asynq.NewTask(taskType, payload),
			asynq.Queue(tk.queue), asynq.MaxRetry(1), asynq.Retention(time.Hour))
		if err != nil {
			t.Fatalf("enqueue: %v", err)
		}
		ids[i] = taskRef{id: info.ID, queue: tk.queue}
	}
	return ids
}

// finished waits until every task (id, queue) is completed or archived and
// returns their infos.
func (e *asynqEnv) finished(t *testing.T, ids []taskRef) []*asynq.TaskInfo {
	t.Helper()
	deadline := time.Now().Add(queuetest.HangGuard)
	for {
		infos := make([]*asynq.TaskInfo, 0, len(ids))
		for _, id := range ids {
			info, err := e.insp.GetTaskInfo(id.queue, id.id)
			if err != nil {
				t.Fatalf("task %s: %v", id.id, err)
			}
			if info.State != asynq.TaskStateCompleted && info.State != asynq.TaskStateArchived {
				break
			}
			infos = append(infos, info)
		}
		if len(infos) == len(ids) {
			return infos
		}
		if time.Now().After(deadline) {
			t.Fatalf("tasks not finished within %s", queuetest.HangGuard)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

const dupKey = `kannuki:item:{"item":"dup"}`

// Duplicates spread over two servers (two queues, two Lockers with pools of
// their own, as two processes would be) are skipped while one of them runs;
// distinct tasks all run.
func TestAsynqSkipsRunningDuplicates(t *testing.T) {
	env := newAsynqEnv(t)
	ev := queuetest.NewEvents()
	tr := newTracker(func(ctx context.Context, item string, _ int) error {
		if item != "dup" {
			return nil
		}
		// Hold the lock until the 4 other duplicates were skipped: they
		// cannot run while it is held, so only skipping lets this return.
		return ev.WaitFor(ctx, kannuki.EventSkipped, dupKey, 4)
	})
	qa, qb := env.queue("a"), env.queue("b")
	env.server(t, qa, tr, kannukiasynq.Middleware(newLocker(t, env.prefix, ev), kannukiasynq.Options{}))
	env.server(t, qb, tr, kannukiasynq.Middleware(newLocker(t, env.prefix, ev), kannukiasynq.Options{}))
	ids := env.enqueue(t,
		task{"dup", qa}, task{"dup", qb}, task{"x1", qa}, task{"dup", qa},
		task{"x2", qb}, task{"dup", qb}, task{"dup", qa}, task{"x3", qb})
	infos := env.finished(t, ids)

	runs, overlaps, started := tr.Snapshot()
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
		t.Errorf("%d skip events for distinct tasks, want 0", n)
	}
	skippedIn := map[string]int{}
	for _, info := range infos {
		if info.State != asynq.TaskStateCompleted {
			t.Errorf("task %s (%s) is %s, want completed (last error %q)", info.ID, info.Payload, info.State, info.LastErr)
		}
		key, skipped := kannukiasynq.SkippedKey(info.Result)
		_, ran := started[info.ID]
		switch {
		case skipped == ran:
			t.Errorf("task %s (%s): skipped %v, ran %v", info.ID, info.Payload, skipped, ran)
		case skipped && key != dupKey:
			t.Errorf("task %s skipped for key %q, want %q", info.ID, key, dupKey)
		case skipped:
			skippedIn[info.Queue]++
		}
	}
	if skippedIn[qa] == 0 || skippedIn[qb] == 0 || skippedIn[qa]+skippedIn[qb] != 4 {
		t.Fatalf("skipped tasks per queue %v, want 4 over both queues: each server gave way to the other's", skippedIn)
	}
}

// Deferred duplicates run later, one at a time, each not sooner than
// RetryAfter after it was deferred (to asynq's one-second resolution),
// without using up their retries.
func TestAsynqRetriesRunningDuplicatesLater(t *testing.T) {
	const retryAfter = 1500 * time.Millisecond
	env := newAsynqEnv(t)
	ev := queuetest.NewEvents()
	tr := newTracker(func(ctx context.Context, item string, nth int) error {
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
	q := env.queue("a")
	d := &deferrals{last: map[string]time.Time{}, n: map[string]int{}}
	mw := kannukiasynq.Middleware(newLocker(t, env.prefix, ev), kannukiasynq.Options{OnConflict: kannukiasynq.RetryLater, RetryAfter: retryAfter})
	env.server(t, q, tr, d.middleware, mw)
	infos := env.finished(t, env.enqueue(t, task{"dup", q}, task{"dup", q}, task{"x1", q}, task{"dup", q}))

	runs, overlaps, started := tr.Snapshot()
	if runs["dup"] != 3 || overlaps["dup"] != 0 || runs["x1"] != 1 {
		t.Fatalf("runs %v overlaps %v, want dup 3 times without overlap and x1 once", runs, overlaps)
	}
	deferred := 0
	for _, info := range infos {
		if info.State != asynq.TaskStateCompleted || info.Retried != 0 {
			t.Errorf("task %s is %s with %d retries used, want completed with 0 (deferrals are not failures)", info.ID, info.State, info.Retried)
		}
		d.mu.Lock()
		last, n := d.last[info.ID], d.n[info.ID]
		d.mu.Unlock()
		if n == 0 {
			continue
		}
		deferred++
		// asynq stores the retry time in whole Unix seconds, truncated.
		if start, due := started[info.ID], last.Add(retryAfter).Truncate(time.Second); start.Before(due) {
			t.Errorf("task %s ran %s after its last deferral, before the retry time %s", info.ID, start.Sub(last), due)
		}
	}
	if deferred < 2 {
		t.Errorf("%d tasks deferred, want at least 2", deferred)
	}
	if n := ev.Count(kannuki.EventSkipped, ""); n != 0 {
		t.Errorf("%d skip events with RetryLater, want 0", n)
	}
}
