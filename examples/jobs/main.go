// Command jobs shows the user guide's use case "Preventing duplicate
// background jobs": the same job (same kind, same arguments) is enqueued
// many times, and a kannukijob.Guard with OnConflict Skip lets only one of
// the duplicates run at a time; the others are skipped and reported.
//
// Each process fills its own queue (a channel) with -jobs distinct
// DataSyncJob(resource_type, resource_id) jobs, each enqueued -dups times,
// shuffled, as several servers receiving the same duplicate enqueues
// would. Workers take jobs from the queue and run them through the guard.
// A running job counts itself in a gauge table, so two duplicates running
// at once, in any process, would show as max_running 2.
//
//	go run ./jobs -backend pg -jobs 10 -dups 6 &
//	go run ./jobs -backend pg -jobs 10 -dups 6
package main

import (
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"os/signal"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kannuki-go/kannuki"
	"github.com/kannuki-go/kannuki/examples/internal/exampleenv"
	"github.com/kannuki-go/kannuki/kannukijob"
)

const (
	runsTable  = "kannuki_example_job_runs"
	gaugeTable = "kannuki_example_job_gauge"
)

// syncArgs are DataSyncJob's arguments: perform(resource_type, resource_id).
type syncArgs struct {
	ResourceType string `json:"resource_type"`
	ResourceID   int64  `json:"resource_id"`
}

func main() {
	cfg := exampleenv.Flags(flag.CommandLine)
	jobs := flag.Int("jobs", 10, "distinct jobs")
	dups := flag.Int("dups", 6, "times each job is enqueued in this process")
	work := flag.Duration("work", 20*time.Millisecond, "time one job takes")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	env, err := cfg.Open(ctx)
	if err != nil {
		exampleenv.Fatal("jobs", err)
	}
	defer env.Close()

	// Count the skip events the Locker reports, to show a skip is never silent.
	var skipEvents atomic.Int64
	hook := kannuki.HookFunc(func(_ context.Context, e kannuki.Event) {
		if e.Kind == kannuki.EventSkipped {
			skipEvents.Add(1)
		}
	})
	locker := kannuki.New(env.Store, kannuki.Options{KeyPrefix: exampleenv.KeyPrefix(env.Run), Hook: hook})
	guard := kannukijob.Guard{Locker: locker, OnConflict: kannukijob.Skip} // unique_by_lock on_conflict: :skip

	gauge := env.NewGauge(gaugeTable)
	if err := env.Schema(ctx, gauge.Schema(), `CREATE TABLE IF NOT EXISTS `+runsTable+` (
	run VARCHAR(64) NOT NULL,
	job_key VARCHAR(200) NOT NULL,
	pid BIGINT NOT NULL)`); err != nil {
		exampleenv.Fatal("jobs", err)
	}

	queue := make(chan syncArgs, *jobs**dups)
	for _, i := range rand.Perm(*jobs * *dups) {
		queue <- syncArgs{ResourceType: "customer", ResourceID: int64(i % *jobs)}
	}
	close(queue)
	if err := env.WaitStart(ctx); err != nil {
		exampleenv.Fatal("jobs", err)
	}

	var ran, skipped atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, env.Workers)
	for range env.Workers {
		wg.Go(func() {
			for args := range queue {
				key, _ := kannukijob.Key("DataSyncJob", args)
				outcome, err := guard.Run(ctx, "DataSyncJob", args, func(ctx context.Context) error {
					return dataSync(ctx, env, gauge, key, *work)
				})
				if err != nil {
					errs <- fmt.Errorf("job %s: %s: %w", key, outcome, err)
					return
				}
				switch outcome {
				case kannukijob.Ran:
					ran.Add(1)
				case kannukijob.Skipped: // a duplicate was running
					skipped.Add(1)
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		exampleenv.Fatal("jobs", err)
	}
	env.Summary("jobs", "enqueued", *jobs**dups, "ran", ran.Load(), "skipped", skipped.Load(), "skip_events", skipEvents.Load())
}

// dataSync is DataSyncJob#perform: it records that it ran, counted in the
// gauge while it runs.
func dataSync(ctx context.Context, env *exampleenv.Env, gauge exampleenv.Gauge, key string, work time.Duration) error {
	if err := gauge.Enter(ctx, key); err != nil {
		return err
	}
	defer gauge.Exit(ctx, key)
	time.Sleep(work) // fetch the resource, write it somewhere
	_, err := env.Data.Exec(ctx, "INSERT INTO "+runsTable+" (run, job_key, pid) VALUES (?, ?, ?)", env.Run, key, env.Pid)
	return err
}
