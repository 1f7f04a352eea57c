// Command scheduler shows the user guide's use case "Singleton
// scheduler": every server of a cluster runs the same schedule, and on
// each tick all of them try the lock "scheduler/hourly_tasks" once; the
// one that gets it runs the tick's tasks, the others skip the tick
// ("another instance running").
//
// A try-lock alone does not make a tick run once: a server that comes late
// to a tick would find the lock free again and run the tasks a second
// time. So the winner records the tick, with the lock still held, and a
// holder skips a tick already recorded ("already done").
//
// Every worker is one scheduler instance. Ticks fall every -interval from
// -start (or from the program's start), -ticks of them.
//
//	start=$(( $(date +%s%3N) + 2000 ))
//	go run ./scheduler -backend pg -start $start &
//	go run ./scheduler -backend pg -start $start
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kannuki-go/kannuki/examples/internal/exampleenv"
)

const (
	ticksTable    = "kannuki_example_scheduler_ticks"
	taskRunsTable = "kannuki_example_scheduler_task_runs"
)

func main() {
	cfg := exampleenv.Flags(flag.CommandLine)
	ticks := flag.Int("ticks", 8, "ticks to run")
	interval := flag.Duration("interval", 250*time.Millisecond, "time between ticks (an hour, in real life)")
	tasks := flag.String("tasks", "expire_sessions,send_digests,refresh_stats", "comma-separated hourly tasks")
	work := flag.Duration("work", 5*time.Millisecond, "time one task takes")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	env, err := cfg.Open(ctx)
	if err != nil {
		exampleenv.Fatal("scheduler", err)
	}
	defer env.Close()
	s := &scheduler{env: env, tasks: strings.Split(*tasks, ","), work: *work}
	if err := env.Schema(ctx,
		`CREATE TABLE IF NOT EXISTS `+ticksTable+` (run VARCHAR(64) NOT NULL, tick BIGINT NOT NULL, pid BIGINT NOT NULL)`,
		`CREATE TABLE IF NOT EXISTS `+taskRunsTable+` (run VARCHAR(64) NOT NULL, tick BIGINT NOT NULL, task VARCHAR(64) NOT NULL, pid BIGINT NOT NULL)`,
	); err != nil {
		exampleenv.Fatal("scheduler", err)
	}
	origin := time.Now()
	if env.Start != 0 {
		origin = time.UnixMilli(env.Start)
	}

	var wg sync.WaitGroup
	errs := make(chan error, env.Workers)
	for range env.Workers {
		wg.Go(func() {
			for tick := range int64(*ticks) {
				// Wait for the tick, as cron would.
				select {
				case <-time.After(time.Until(origin.Add(time.Duration(tick) * *interval))):
				case <-ctx.Done():
					errs <- ctx.Err()
					return
				}
				if err := s.perform(ctx, tick); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		exampleenv.Fatal("scheduler", err)
	}
	env.Summary("scheduler", "ticks", *ticks, "ran", s.ran.Load(), "already_done", s.done.Load(), "skipped", s.skipped.Load())
}

type scheduler struct {
	env   *exampleenv.Env
	tasks []string
	work  time.Duration

	ran, done, skipped atomic.Int64
}

// perform is SchedulerJob#perform for one tick.
func (s *scheduler) perform(ctx context.Context, tick int64) error {
	ok, err := s.env.Locker.TryLock(ctx, "scheduler/hourly_tasks", func(ctx context.Context) error {
		db := s.env.Data
		n, err := db.Int(ctx, "SELECT COUNT(*) FROM "+ticksTable+" WHERE run = ? AND tick = ?", s.env.Run, tick)
		if err != nil {
			return err
		}
		if n > 0 {
			s.done.Add(1) // a late instance: the tick already ran
			return nil
		}
		for _, task := range s.tasks { // HourlyTasks.each(&:run)
			time.Sleep(s.work)
			if _, err := db.Exec(ctx, "INSERT INTO "+taskRunsTable+" (run, tick, task, pid) VALUES (?, ?, ?, ?)",
				s.env.Run, tick, task, s.env.Pid); err != nil {
				return err
			}
		}
		_, err = db.Exec(ctx, "INSERT INTO "+ticksTable+" (run, tick, pid) VALUES (?, ?, ?)", s.env.Run, tick, s.env.Pid)
		s.ran.Add(1)
		return err
	})
	if err != nil {
		return fmt.Errorf("tick %d: %w", tick, err)
	}
	if !ok {
		s.skipped.Add(1) // "Scheduler skipped - another instance running"
	}
	return nil
}
