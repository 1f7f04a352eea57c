package kannukipgxv5

import (
	"testing"

	"github.com/kannuki-go/kannuki/store"

	"github.com/kannuki-go/kannuki/backendtest"
	"github.com/kannuki-go/kannuki/internal/pgsql"
	"github.com/kannuki-go/kannuki/internal/testdb"
)

// TestConformance runs the shared backend suite with multiplexing on (the
// default): exclusion across goroutines, clients and OS processes, the
// request contract, shared locks, crash, lock loss, leaks and keys.
func TestConformance(t *testing.T) {
	conformance(t, Options{})
}

// TestConformanceDedicated runs the suite with multiplexing off: every
// held lock pins a connection of its own.
func TestConformanceDedicated(t *testing.T) {
	conformance(t, dedicatedOpts)
}

func conformance(t *testing.T, opts Options) {
	// Skip (or fail) here without the database: the suite's crash case
	// would otherwise report the child's skip as a failure.
	newPool(t, 1)
	backendtest.Run(t, backendtest.Harness{
		New: func(t testing.TB) store.Backend {
			return New(newPool(t, 8), opts)
		},
		Shared:       true,
		MultiProcess: true,
		KillHolder:   terminateHolders,
	})
}

// terminateHolders ends, from a session of its own, every session holding
// key in this database.
func terminateHolders(t testing.TB, key store.Key) {
	t.Helper()
	obs := newObserver(t)
	ctx, cancel := guardCtx()
	defer cancel()
	var n int
	err := obs.c.QueryRow(ctx, "SELECT count(pg_terminate_backend(pid)) FROM pg_locks WHERE "+pgsql.Where(key)+" AND granted").Scan(&n)
	if err != nil {
		testdb.Unavailable(t, "PostgreSQL", err)
	}
	if n == 0 {
		t.Fatalf("terminate holders of %q: nobody holds it", key.String)
	}
}
