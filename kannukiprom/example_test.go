package kannukiprom_test

import (
	"context"
	"fmt"

	"github.com/kannuki-go/kannuki"
	"github.com/kannuki-go/kannuki/kannukimem"
	"github.com/kannuki-go/kannuki/kannukiprom"
	"github.com/prometheus/client_golang/prometheus"
)

// A Locker counted by Prometheus: the Collector is the Locker's hook and
// is registered like any collector (here on a registry of its own, usually
// on prometheus.DefaultRegisterer, served by promhttp).
func ExampleNew() {
	c := kannukiprom.New(kannukiprom.Options{ConstLabels: prometheus.Labels{"backend": "memory"}})
	reg := prometheus.NewRegistry()
	reg.MustRegister(c)
	l := kannuki.New(kannukimem.New(), kannuki.Options{Hook: c})
	ctx := context.Background()

	h, _ := l.Acquire(ctx, "reports/daily")
	ok, _ := l.TryLock(ctx, "reports/daily", func(context.Context) error { return nil })
	_ = h.Release(ctx)
	fmt.Println("second run:", ok)

	mfs, _ := reg.Gather()
	for _, mf := range mfs {
		if mf.GetName() != "kannuki_lock_acquisitions_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if lp.GetName() == "outcome" {
					fmt.Println(mf.GetName(), lp.GetValue(), m.GetCounter().GetValue())
				}
			}
		}
	}
	// Output:
	// second run: false
	// kannuki_lock_acquisitions_total acquired 1
	// kannuki_lock_acquisitions_total held 1
}
