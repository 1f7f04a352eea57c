package kannukitest_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/kannuki-go/kannuki/kannukitest"
)

// The user guide's "Simulating Held Locks": another process holds the
// order's lock, so TryLock reports false and the work does not run.
func Example_simulateLockHeld() {
	t := newExampleT() // in a real test: the *testing.T
	defer t.end()

	l := kannukitest.New(t)
	l.SimulateHeld("order_processing/123")

	ok, err := l.TryLock(context.Background(), "order_processing/123", func(ctx context.Context) error {
		fmt.Println("processed")
		return nil
	})
	fmt.Println(ok, err)
	// Output: false <nil>
}

// The user guide's "processes order when lock is available": WithLock
// runs the function, and the test can check the lock was taken and given
// back.
func Example_withLock() {
	t := newExampleT() // in a real test: the *testing.T
	defer t.end()

	l := kannukitest.New(t)
	var result string
	err := l.WithLock(context.Background(), "order_processing/123", func(ctx context.Context) error {
		result = "processed"
		return nil
	})
	fmt.Println(result, err)
	l.AssertAcquired("order_processing/123")
	l.AssertNotHeld("order_processing/123")
	// Output: processed <nil>
}

// The RSpec helpers' automatic clear! becomes t.Cleanup: when the test
// ends, a lock that was never released fails it.
func Example_leakCheck() {
	t := newExampleT() // in a real test: the *testing.T
	l := kannukitest.New(t)

	h, err := l.Acquire(context.Background(), "report/daily")
	fmt.Println(h.Key(), err)
	// ... and no h.Release: the end of the test reports it.
	t.end()
	// Output:
	// report/daily <nil>
	// FAIL: kannukitest: 1 lock(s) still held at the end of the test (a missing Release, or fn still running): "report/daily" (exclusive, taken at example_test.go:53)
}

// exampleT stands in for the *testing.T a test function receives, so the
// examples can run: it prints failures and runs cleanups at end.
type exampleT struct {
	testing.TB
	cleanups []func()
}

func newExampleT() *exampleT { return &exampleT{} }

func (t *exampleT) Helper()                           {}
func (t *exampleT) Cleanup(f func())                  { t.cleanups = append(t.cleanups, f) }
func (t *exampleT) Errorf(format string, args ...any) { fmt.Printf("FAIL: "+format+"\n", args...) }
func (t *exampleT) Fatalf(format string, args ...any) { panic(fmt.Sprintf(format, args...)) }

func (t *exampleT) end() {
	for i := len(t.cleanups) - 1; i >= 0; i-- {
		t.cleanups[i]()
	}
	t.cleanups = nil
}
