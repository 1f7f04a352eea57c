package mysql

import (
	"testing"

	"github.com/kannuki-go/kannuki/store"

	"github.com/kannuki-go/kannuki/backendtest"
	"github.com/kannuki-go/kannuki/kannukimysql"
)

// TestConformance runs the shared backend suite (cross-process exclusion
// and SIGKILL crash included) against kannukimysql with each DSN.
// The subtest "dialer" runs it once more with the socket watch on (the
// pool dials through a kannukimysql.Dialer).
func TestConformance(t *testing.T) {
	forEachVariant(t, func(t *testing.T, v variant) { conformance(t, v, false) })
	t.Run("dialer", func(t *testing.T) { conformance(t, variants[0], true) })
}

func conformance(t *testing.T, v variant, dialer bool) {
	// Skip (or fail) here when the server is down: the suite's crash
	// case starts its child before it asks the harness for a backend.
	openDB(t, v.dsn(), 1)
	backendtest.Run(t, backendtest.Harness{
		New: func(t testing.TB) store.Backend {
			// Every waiting goroutine pins a connection: the suite's 16
			// goroutines per client need 16, plus one for the KILL that
			// follows a canceled wait. With fewer, tries fail with
			// ErrNoConnection after ConnWait while waits forever hold the
			// pool (see "Pool size" in kannukimysql's doc).
			if dialer {
				return newWatchBackend(t, v, watchSetups[0], 17)
			}
			b, _ := newBackend(t, v, 17, kannukimysql.Options{})
			return b
		},
		Shared:       false,
		MultiProcess: true,
		KillHolder: func(t testing.TB, key store.Key) {
			obs := newObserver(t)
			if id := obs.owner(t, key); id != 0 {
				obs.kill(t, id)
			}
		},
		HeldOnServer: func(t testing.TB, key store.Key) bool {
			return newObserver(t).owner(t, key) != 0
		},
	})
}
