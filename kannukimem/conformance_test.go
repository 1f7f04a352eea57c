package kannukimem

import (
	"testing"

	"github.com/kannuki-go/kannuki"
	"github.com/kannuki-go/kannuki/backendtest"
)

func TestConformance(t *testing.T) {
	b := New() // one in-process store: every "client" shares it
	backendtest.Run(t, backendtest.Harness{
		New:    func(testing.TB) kannuki.Backend { return b },
		Shared: true,
		KillHolder: func(t testing.TB, key kannuki.Key) {
			if b.Lose(key) == 0 {
				t.Fatalf("KillHolder: nobody holds %q", key.String)
			}
		},
	})
}
