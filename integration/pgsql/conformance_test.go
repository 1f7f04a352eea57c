package pgsql

import (
	"testing"

	"github.com/kannuki-go/kannuki/store"

	"github.com/kannuki-go/kannuki/backendtest"
	"github.com/kannuki-go/kannuki/kannukipg"
)

// TestConformance runs the shared backend suite (cross-process exclusion
// and SIGKILL crash included) against kannukipg on each driver.
func TestConformance(t *testing.T) {
	// One suite at a time: its goroutine-leak check sees the whole process.
	forEachDriverSerial(t, func(t *testing.T, d driver) {
		backendtest.Run(t, backendtest.Harness{
			New: func(t testing.TB) store.Backend {
				return kannukipg.New(openDB(t, d, 8), kannukipg.Options{})
			},
			Shared:       true,
			MultiProcess: true,
			KillHolder: func(t testing.TB, key store.Key) {
				newObserver(t).terminate(t, key)
			},
			HeldOnServer: func(t testing.TB, key store.Key) bool {
				return newObserver(t).held(t, key) > 0
			},
		})
	})
}
