package kannukimem

import (
	"testing"

	"github.com/kannuki-go/kannuki/store"

	"github.com/kannuki-go/kannuki/backendtest"
)

func TestConformance(t *testing.T) {
	b := New() // one in-process store: every "client" shares it
	backendtest.Run(t, backendtest.Harness{
		New:    func(testing.TB) store.Backend { return b },
		Shared: true,
		KillHolder: func(t testing.TB, key store.Key) {
			if b.Lose(key) == 0 {
				t.Fatalf("KillHolder: nobody holds %q", key.String)
			}
		},
	})
}
