// Command kannukibench measures Kannuki against the raw floor and the Redis
// lock libraries on the local servers and writes BENCHMARKS.md.
//
//	cd bench && go run ./cmd/kannukibench -out ../BENCHMARKS.md
//
// -quick runs every measurement briefly (seconds), for CI.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"time"

	"github.com/kannuki-go/kannuki/bench"
)

// command is how the report says it was made.
const command = "cd bench && go run ./cmd/kannukibench -out ../BENCHMARKS.md"

func main() {
	quick := flag.Bool("quick", false, "run every measurement briefly (a smoke test for CI)")
	out := flag.String("out", "", "write the report to this file (default: standard output)")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	plan := bench.FullPlan()
	if *quick {
		plan = bench.QuickPlan()
	}
	start := time.Now()
	progress := func(s string) {
		fmt.Fprintf(os.Stderr, "[%6.1fs] %s\n", time.Since(start).Seconds(), s)
	}
	r := bench.Run(ctx, bench.NewEnv(), plan, *quick, progress)
	r.Command = command
	if *quick {
		r.Command = "cd bench && go run ./cmd/kannukibench -quick -out ../BENCHMARKS.md"
	}
	w := os.Stdout
	if *out != "" {
		f, err := os.Create(*out)
		if err != nil {
			fmt.Fprintln(os.Stderr, "kannukibench:", err)
			os.Exit(1)
		}
		defer func() {
			if err := f.Close(); err != nil {
				fmt.Fprintln(os.Stderr, "kannukibench:", err)
				os.Exit(1)
			}
		}()
		w = f
	}
	if err := r.Markdown(w); err != nil {
		fmt.Fprintln(os.Stderr, "kannukibench:", err)
		os.Exit(1)
	}
	if ctx.Err() != nil {
		fmt.Fprintln(os.Stderr, "kannukibench: interrupted; the report is incomplete")
		os.Exit(1)
	}
	progress("done")
}
