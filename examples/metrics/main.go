// Command metrics runs real lock traffic on PostgreSQL with the
// OpenTelemetry and Prometheus hooks and shows what they measured.
//
// Several workers contend for a few keys: most calls wait up to a timeout
// and hold the lock for a few milliseconds, some only try once, as a
// scheduler skipping a duplicate job would. Afterwards the program prints
// a summary of the OpenTelemetry spans and metrics and the Prometheus
// exposition of the kannuki_ metrics.
//
//	go run . -dsn postgres://postgres@127.0.0.1:5432/test?sslmode=disable
//	go run . -serve 127.0.0.1:9464   # keep the traffic going and serve /metrics until interrupted
//
// The DSN defaults to $KANNUKI_PG_DSN, then to the one above.
package main

import (
	"context"
	"database/sql"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"math/rand/v2"
	"net/http"
	"os"
	"os/signal"
	"sort"
	"strconv"
	"sync"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // database/sql driver "pgx"
	"github.com/kannuki-go/kannuki"
	"github.com/kannuki-go/kannuki/kannukiotel"
	"github.com/kannuki-go/kannuki/kannukipg"
	"github.com/kannuki-go/kannuki/kannukiprom"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/common/expfmt"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

// config is what the flags set.
type config struct {
	dsn      string
	prefix   string // key prefix
	workers  int
	keys     int
	duration time.Duration // how long the traffic runs; 0 = until the context ends
	timeout  time.Duration // how long a call waits for its lock
	serve    string        // address for /metrics; "" prints instead
}

func main() {
	cfg := config{dsn: os.Getenv("KANNUKI_PG_DSN"), prefix: "kannuki-example-metrics"}
	if cfg.dsn == "" {
		cfg.dsn = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"
	}
	flag.StringVar(&cfg.dsn, "dsn", cfg.dsn, "PostgreSQL DSN (pgx)")
	flag.IntVar(&cfg.workers, "workers", 6, "goroutines taking locks")
	flag.IntVar(&cfg.keys, "keys", 2, "distinct keys they contend for")
	flag.DurationVar(&cfg.duration, "duration", 2*time.Second, "how long to run the traffic (ignored with -serve)")
	flag.DurationVar(&cfg.timeout, "timeout", 40*time.Millisecond, "how long a call waits for its lock")
	flag.StringVar(&cfg.serve, "serve", "", "serve /metrics on this address (e.g. 127.0.0.1:9464) until interrupted")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if cfg.serve != "" {
		cfg.duration = 0
	}
	if err := run(ctx, cfg, os.Stdout); err != nil {
		log.Fatal(err)
	}
}

// run wires both hooks to a Locker on PostgreSQL, runs the traffic and
// reports to out.
func run(ctx context.Context, cfg config, out io.Writer) error {
	db, err := sql.Open("pgx", cfg.dsn)
	if err != nil {
		return err
	}
	defer db.Close()
	db.SetMaxOpenConns(cfg.workers + 2) // each held or awaited lock pins a connection
	if err := db.PingContext(ctx); err != nil {
		return fmt.Errorf("connecting to PostgreSQL: %w", err)
	}

	// OpenTelemetry: a real SDK. A program would export to a collector
	// (OTLP); this one counts the spans and reads the metrics itself.
	spans := &spanCounter{}
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans))
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	defer tp.Shutdown(context.Background())
	defer mp.Shutdown(context.Background())
	otelHook, err := kannukiotel.NewHook(kannukiotel.Options{
		TracerProvider: tp, MeterProvider: mp, DBSystem: "postgresql", SpanHold: true,
	})
	if err != nil {
		return err
	}

	// Prometheus: the Collector is registered like any other.
	prom := kannukiprom.New(kannukiprom.Options{ConstLabels: prometheus.Labels{"backend": "postgresql"}})
	reg := prometheus.NewRegistry()
	reg.MustRegister(prom)

	l := kannuki.New(kannukipg.New(db, kannukipg.Options{}), kannuki.Options{
		KeyPrefix: cfg.prefix,
		Hook:      kannuki.Hooks(otelHook, prom),
	})

	trafficCtx := ctx
	if cfg.duration > 0 {
		var cancel context.CancelFunc
		trafficCtx, cancel = context.WithTimeout(ctx, cfg.duration)
		defer cancel()
	}
	if cfg.serve != "" {
		srv := &http.Server{Addr: cfg.serve, Handler: promhttp.HandlerFor(reg, promhttp.HandlerOpts{}), ReadHeaderTimeout: 5 * time.Second}
		go func() {
			<-ctx.Done()
			_ = srv.Close()
		}()
		go func() {
			if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
				log.Print(err)
			}
		}()
		fmt.Fprintf(out, "serving http://%s/metrics; interrupt to stop\n", cfg.serve)
	}

	calls, err := traffic(trafficCtx, l, cfg)
	if err != nil {
		return err
	}
	// The hook hands spans to the SDK in batches: flush it before reading
	// them, as a program flushes it before shutting its providers down.
	otelHook.Flush()
	fmt.Fprintf(out, "%d workers, %d keys, %d calls\n\n", cfg.workers, cfg.keys, calls)
	if err := reportOTel(out, spans, reader); err != nil {
		return err
	}
	return reportProm(out, reg)
}

// traffic runs the workers until ctx ends and returns how many calls they
// made. Lock refusals are expected; any other error stops the traffic.
func traffic(ctx context.Context, l *kannuki.Locker, cfg config) (int, error) {
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		calls int
		first error
	)
	for w := range cfg.workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), uint64(time.Now().UnixNano())))
			n, err := worker(ctx, l, cfg, rng)
			mu.Lock()
			defer mu.Unlock()
			calls += n
			if first == nil {
				first = err
			}
		}()
	}
	wg.Wait()
	return calls, first
}

func worker(ctx context.Context, l *kannuki.Locker, cfg config, rng *rand.Rand) (int, error) {
	work := func(ctx context.Context) error {
		select { // the guarded work: a few milliseconds
		case <-time.After(time.Duration(1+rng.IntN(15)) * time.Millisecond):
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	n := 0
	for ctx.Err() == nil {
		key := "orders/" + strconv.Itoa(rng.IntN(cfg.keys))
		var err error
		if rng.IntN(5) == 0 {
			_, err = l.TryLock(ctx, key, work) // a duplicate job: skip if running
		} else {
			err = l.WithLock(ctx, key, work, kannuki.Timeout(cfg.timeout))
		}
		n++
		switch {
		case err == nil, errors.Is(err, kannuki.ErrNotAcquired), ctx.Err() != nil:
		default:
			return n, err
		}
	}
	return n, nil
}

// spanCounter is an OpenTelemetry span processor that counts ended spans
// by name and outcome.
type spanCounter struct {
	mu sync.Mutex
	n  map[string]int
}

func (c *spanCounter) OnStart(context.Context, sdktrace.ReadWriteSpan) {}
func (c *spanCounter) Shutdown(context.Context) error                  { return nil }
func (c *spanCounter) ForceFlush(context.Context) error                { return nil }

func (c *spanCounter) OnEnd(s sdktrace.ReadOnlySpan) {
	what := s.Name()
	for _, kv := range s.Attributes() {
		if kv.Key == kannukiotel.AttrOutcome || kv.Key == kannukiotel.AttrEnd {
			what += " " + kv.Value.String()
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n == nil {
		c.n = map[string]int{}
	}
	c.n[what]++
}

func reportOTel(out io.Writer, spans *spanCounter, reader *sdkmetric.ManualReader) error {
	fmt.Fprintln(out, "== OpenTelemetry spans")
	spans.mu.Lock()
	names := make([]string, 0, len(spans.n))
	for name := range spans.n {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		fmt.Fprintf(out, "%-36s %6d\n", name, spans.n[name])
	}
	spans.mu.Unlock()

	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		return err
	}
	fmt.Fprintln(out, "\n== OpenTelemetry histograms (all attributes together)")
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			h, ok := m.Data.(metricdata.Histogram[float64])
			if !ok {
				continue
			}
			var count uint64
			var sum, hi float64
			for _, dp := range h.DataPoints {
				count += dp.Count
				sum += dp.Sum
				if v, ok := dp.Max.Value(); ok && v > hi {
					hi = v
				}
			}
			if count > 0 {
				fmt.Fprintf(out, "%-28s count %6d  mean %9s  max %9s\n", m.Name, count,
					seconds(sum/float64(count)), seconds(hi))
			}
		}
	}
	fmt.Fprintln(out)
	return nil
}

func seconds(s float64) string {
	return time.Duration(s * float64(time.Second)).Round(time.Microsecond).String()
}

func reportProm(out io.Writer, reg *prometheus.Registry) error {
	fmt.Fprintln(out, "== Prometheus exposition")
	mfs, err := reg.Gather()
	if err != nil {
		return err
	}
	enc := expfmt.NewEncoder(out, expfmt.NewFormat(expfmt.TypeTextPlain))
	for _, mf := range mfs {
		if err := enc.Encode(mf); err != nil {
			return err
		}
	}
	return nil
}
