package kannukiotel_test

import (
	"context"
	"strings"
	"testing"

	"github.com/kannuki-go/kannuki/kannukiotel"
	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
)

// rig is an OpenTelemetry SDK whose spans and metrics the test can read.
type rig struct {
	exp    *tracetest.InMemoryExporter
	reader *sdkmetric.ManualReader
	tp     *sdktrace.TracerProvider
	hook   *kannukiotel.Hook
}

func newRig(t testing.TB, opts kannukiotel.Options) *rig {
	t.Helper()
	r := &rig{exp: tracetest.NewInMemoryExporter(), reader: sdkmetric.NewManualReader()}
	r.tp = sdktrace.NewTracerProvider(sdktrace.WithSyncer(r.exp))
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(r.reader))
	t.Cleanup(func() {
		_ = r.tp.Shutdown(context.Background())
		_ = mp.Shutdown(context.Background())
	})
	opts.TracerProvider, opts.MeterProvider = r.tp, mp
	var err error
	if r.hook, err = kannukiotel.NewHook(opts); err != nil {
		t.Fatal(err)
	}
	return r
}

// spans flushes the hook and returns every span exported so far.
func (r *rig) spans() []tracetest.SpanStub {
	r.hook.Flush()
	return r.exp.GetSpans()
}

// metrics is one collection, by instrument name.
type metrics map[string]metricdata.Aggregation

func (r *rig) collect(t testing.TB) metrics {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := r.reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	out := metrics{}
	for _, sm := range rm.ScopeMetrics {
		if sm.Scope.Name != kannukiotel.ScopeName {
			t.Errorf("instrumentation scope %q, want %q", sm.Scope.Name, kannukiotel.ScopeName)
		}
		for _, m := range sm.Metrics {
			out[m.Name] = m.Data
		}
	}
	return out
}

// matches reports whether set has every one of want.
func matches(set attribute.Set, want []attribute.KeyValue) bool {
	for _, kv := range want {
		if v, ok := set.Value(kv.Key); !ok || v != kv.Value {
			return false
		}
	}
	return true
}

// sum adds up the int64 sum points of name whose attributes have want.
func (m metrics) sum(t testing.TB, name string, want ...attribute.KeyValue) int64 {
	t.Helper()
	data, ok := m[name].(metricdata.Sum[int64])
	if !ok {
		t.Fatalf("metric %s: %T, want an int64 sum", name, m[name])
	}
	var n int64
	for _, dp := range data.DataPoints {
		if matches(dp.Attributes, want) {
			n += dp.Value
		}
	}
	return n
}

// hist sums the histogram points of name whose attributes have want and
// returns their count and largest value.
func (m metrics) hist(t testing.TB, name string, want ...attribute.KeyValue) (count uint64, maxV float64) {
	t.Helper()
	data, ok := m[name].(metricdata.Histogram[float64])
	if !ok {
		t.Fatalf("metric %s: %T, want a float64 histogram", name, m[name])
	}
	for _, dp := range data.DataPoints {
		if !matches(dp.Attributes, want) {
			continue
		}
		count += dp.Count
		if v, ok := dp.Max.Value(); ok && v > maxV {
			maxV = v
		}
	}
	return count, maxV
}

// attributeSets returns every attribute set of every data point.
func (m metrics) attributeSets() map[string][]attribute.Set {
	out := map[string][]attribute.Set{}
	for name, agg := range m {
		switch d := agg.(type) {
		case metricdata.Sum[int64]:
			for _, dp := range d.DataPoints {
				out[name] = append(out[name], dp.Attributes)
			}
		case metricdata.Histogram[float64]:
			for _, dp := range d.DataPoints {
				out[name] = append(out[name], dp.Attributes)
			}
		}
	}
	return out
}

// noKeyInMetrics fails if key appears in any metric attribute.
func noKeyInMetrics(t testing.TB, m metrics, key string) {
	t.Helper()
	for name, sets := range m.attributeSets() {
		for _, s := range sets {
			for _, kv := range s.ToSlice() {
				if kv.Key == kannukiotel.AttrKey || strings.Contains(kv.Value.String(), key) {
					t.Errorf("metric %s carries the key: %s=%s", name, kv.Key, kv.Value.String())
				}
			}
		}
	}
}

// spanMentions reports where, if anywhere, a span shows s.
func spanMentions(sp tracetest.SpanStub, s string) string {
	for _, kv := range sp.Attributes {
		if strings.Contains(kv.Value.String(), s) {
			return "attribute " + string(kv.Key)
		}
	}
	for _, ev := range sp.Events {
		for _, kv := range ev.Attributes {
			if strings.Contains(kv.Value.String(), s) {
				return "event attribute " + string(kv.Key)
			}
		}
	}
	if strings.Contains(sp.Status.Description, s) {
		return "status"
	}
	return ""
}

// attr returns the value of key on a span, or "".
func attr(sp tracetest.SpanStub, key attribute.Key) string {
	for _, kv := range sp.Attributes {
		if kv.Key == key {
			return kv.Value.String()
		}
	}
	return ""
}
