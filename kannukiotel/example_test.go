package kannukiotel_test

import (
	"context"
	"fmt"

	"github.com/kannuki-go/kannuki"
	"github.com/kannuki-go/kannuki/kannukimem"
	"github.com/kannuki-go/kannuki/kannukiotel"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
)

// A Locker reporting to OpenTelemetry. A program would pass nothing and
// let the hook use the global providers its SDK set up; here a manual
// reader shows the acquisitions counted by outcome.
func ExampleNewHook() {
	reader := sdkmetric.NewManualReader()
	hook, err := kannukiotel.NewHook(kannukiotel.Options{
		MeterProvider: sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader)),
		DBSystem:      "postgresql", // as kannukipg would be
	})
	if err != nil {
		panic(err)
	}
	l := kannuki.New(kannukimem.New(), kannuki.Options{Hook: hook})
	ctx := context.Background()

	h, _ := l.Acquire(ctx, "reports/daily")
	ok, _ := l.TryLock(ctx, "reports/daily", func(context.Context) error { return nil })
	_ = h.Release(ctx)
	fmt.Println("second run:", ok)

	var rm metricdata.ResourceMetrics
	_ = reader.Collect(ctx, &rm)
	for _, m := range rm.ScopeMetrics[0].Metrics {
		if m.Name != "kannuki.lock.acquisitions" {
			continue
		}
		for _, dp := range m.Data.(metricdata.Sum[int64]).DataPoints {
			outcome, _ := dp.Attributes.Value(kannukiotel.AttrOutcome)
			fmt.Println(m.Name, outcome.AsString(), dp.Value)
		}
	}
	// Unordered output:
	// second run: false
	// kannuki.lock.acquisitions acquired 1
	// kannuki.lock.acquisitions held 1
}
