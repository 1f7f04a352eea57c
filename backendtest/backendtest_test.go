package backendtest_test

import (
	"testing"

	"github.com/kannuki-go/kannuki/store"

	"github.com/kannuki-go/kannuki/backendtest"
	"github.com/kannuki-go/kannuki/kannukimem"
)

// TestConformance runs the suite against the memory backend, which is how
// the suite itself is tested: every case must pass on a correct backend.
func TestConformance(t *testing.T) {
	mem := kannukimem.New() // one store; every "client" shares it
	backendtest.Run(t, backendtest.Harness{
		New:    func(testing.TB) store.Backend { return mem },
		Shared: true,
		KillHolder: func(t testing.TB, key store.Key) {
			if n := mem.Lose(key); n == 0 {
				t.Fatalf("Lose(%q): no lease held the key", key.String)
			}
		},
	})
}
