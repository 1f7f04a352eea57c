package kannuki_test

import (
	"flag"
	"os"
	"path/filepath"
	"testing"

	"github.com/kannuki-go/kannuki/internal/apidump"
)

var updateAPI = flag.Bool("update-api", false, "rewrite testdata/api/*.txt from the code")

// TestAPI fails when the exported API of the packages users and backend
// authors see changes without its golden file: rerun with -update-api and
// commit the file with the change, so that every API change is reviewed.
func TestAPI(t *testing.T) {
	for _, dir := range []string{".", "store", "keys", "global"} {
		got, ids, err := apidump.Dump(dir)
		if err != nil {
			t.Fatal(err)
		}
		name := filepath.Base(filepath.Clean(dir))
		if dir == "." {
			name = "kannuki"
			// The root package is what application code reads: it stays
			// on one screen (issue 15 halved it from 132 identifiers).
			if ids > 66 {
				t.Errorf("the root package exports %d identifiers, want at most 66", ids)
			}
		}
		golden := filepath.Join("testdata", "api", name+".txt")
		if *updateAPI {
			if err := os.MkdirAll(filepath.Dir(golden), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		want, err := os.ReadFile(golden)
		if err != nil {
			t.Fatalf("%v (run go test -run TestAPI -update-api)", err)
		}
		if string(want) != got {
			t.Errorf("the API of %s differs from %s; if the change is meant, run go test -run TestAPI -update-api and commit the file.\n--- got:\n%s", dir, golden, got)
		}
	}
}
