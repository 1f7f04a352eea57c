//go:build linux || darwin || dragonfly || freebsd || netbsd || openbsd

package kannukifile_test

import (
	"context"
	"fmt"
	"log"
	"os"

	"github.com/kannuki-go/kannuki"
	"github.com/kannuki-go/kannuki/kannukifile"
)

// One process on this host at a time runs the report; the others wait.
// kannukifile.New("", ...) would use the per-user default directory.
func Example() {
	dir, err := os.MkdirTemp("", "kannuki-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)

	b, err := kannukifile.New(dir, kannukifile.Options{})
	if err != nil {
		log.Fatal(err)
	}
	defer b.Close()
	l := kannuki.New(b, kannuki.Options{KeyPrefix: "myapp"})

	err = l.WithLock(context.Background(), "nightly-report", func(ctx context.Context) error {
		fmt.Println("generating the report")
		return nil
	})
	fmt.Println(err)
	// Output:
	// generating the report
	// <nil>
}
