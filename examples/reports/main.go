// Command reports shows the user guide's use case "Exclusive resource
// access per user": a user may have one generation of a given report in
// progress at a time. Generating takes the lock "reports/<user>/<type>"
// with TryLock; if another generation holds it, the request is refused at
// once with "report generation already in progress" instead of waiting.
//
// Workers in several processes request reports for -users users and
// -types types; a generation counts itself in a gauge table while it runs,
// so two generations of one report at once, in any process, would show.
//
//	go run ./reports -backend pg -users 2 -types sales,usage &
//	go run ./reports -backend pg -users 2 -types sales,usage
package main

import (
	"context"
	"errors"
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
	reportsTable = "kannuki_example_reports"
	gaugeTable   = "kannuki_example_report_gauge"
)

// errInProgress is the guide's "Report generation already in progress".
var errInProgress = errors.New("report generation already in progress")

func main() {
	cfg := exampleenv.Flags(flag.CommandLine)
	users := flag.Int("users", 2, "users 1..n")
	types := flag.String("types", "sales,usage", "comma-separated report types")
	attempts := flag.Int("attempts", 10, "reports each worker requests")
	work := flag.Duration("work", 20*time.Millisecond, "time generating one report takes")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	env, err := cfg.Open(ctx)
	if err != nil {
		exampleenv.Fatal("reports", err)
	}
	defer env.Close()
	g := &generator{env: env, gauge: env.NewGauge(gaugeTable), work: *work}
	if err := env.Schema(ctx, g.gauge.Schema(), `CREATE TABLE IF NOT EXISTS `+reportsTable+` (
	run VARCHAR(64) NOT NULL,
	user_id BIGINT NOT NULL,
	type VARCHAR(64) NOT NULL,
	pid BIGINT NOT NULL)`); err != nil {
		exampleenv.Fatal("reports", err)
	}
	kinds := strings.Split(*types, ",")
	if err := env.WaitStart(ctx); err != nil {
		exampleenv.Fatal("reports", err)
	}

	var generated, inProgress atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, env.Workers)
	for w := range env.Workers {
		wg.Go(func() {
			for i := range *attempts {
				user, kind := int64((w+i)%*users+1), kinds[(w+i)/(*users)%len(kinds)]
				err := g.generate(ctx, user, kind)
				switch {
				case errors.Is(err, errInProgress):
					inProgress.Add(1) // a real client would tell the user to come back later
				case err != nil:
					errs <- err
					return
				default:
					generated.Add(1)
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		exampleenv.Fatal("reports", err)
	}
	env.Summary("reports", "generated", generated.Load(), "in_progress", inProgress.Load())
}

type generator struct {
	env   *exampleenv.Env
	gauge exampleenv.Gauge
	work  time.Duration
}

// generate is the guide's ReportGenerator#generate.
func (g *generator) generate(ctx context.Context, user int64, kind string) error {
	key := fmt.Sprintf("reports/%d/%s", user, kind)
	ok, err := g.env.Locker.TryLock(ctx, key, func(ctx context.Context) error {
		if err := g.gauge.Enter(ctx, key); err != nil {
			return err
		}
		defer g.gauge.Exit(ctx, key)
		time.Sleep(g.work) // build the report
		_, err := g.env.Data.Exec(ctx, "INSERT INTO "+reportsTable+" (run, user_id, type, pid) VALUES (?, ?, ?, ?)",
			g.env.Run, user, kind, g.env.Pid)
		return err
	})
	if err != nil {
		return fmt.Errorf("report %s: %w", key, err)
	}
	if !ok {
		return fmt.Errorf("report %s: %w", key, errInProgress)
	}
	return nil
}
