//go:build linux || darwin || dragonfly || freebsd || netbsd || openbsd

package kannukifile

import (
	"os"
	"testing"

	"github.com/kannuki-go/kannuki/store"

	"github.com/kannuki-go/kannuki/backendtest"
)

func TestConformance(t *testing.T) {
	// The cross-process cases re-execute this test: the children find the
	// parent's lock directory in the environment.
	const dirEnv = "KANNUKIFILE_CONFORMANCE_DIR"
	dir := os.Getenv(dirEnv)
	if dir == "" {
		dir = t.TempDir()
		t.Setenv(dirEnv, dir)
	}
	backendtest.Run(t, backendtest.Harness{
		New: func(t testing.TB) store.Backend {
			return newBackend(t, dir) // a fresh Backend: its own queue and descriptors
		},
		Shared:       true,
		MultiProcess: true,
		// A flock cannot be taken from a living process; removing its
		// file is how it stops protecting anything (see Lease.Check).
		KillHolder: func(t testing.TB, key store.Key) {
			b := newBackend(t, dir)
			if err := os.Remove(b.Path(key)); err != nil {
				t.Fatalf("KillHolder: %v", err)
			}
		},
	})
}
