package chaos

import (
	"flag"
	"os"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	"go.uber.org/goleak"
)

var longFlag = flag.Bool("chaos.long", false, "run the long version of the chaos suite (also KANNUKI_CHAOS_LONG=1)")

// long reports whether the long version runs: 100,000+ lock cycles,
// database restarts and max_connections exhaustion.
func long() bool { return *longFlag || os.Getenv("KANNUKI_CHAOS_LONG") == "1" }

// restarts reports whether the cases that restart the database servers may
// run. They disturb every other client of those servers, so they never run
// in the default short run.
func restarts() bool { return long() || os.Getenv("KANNUKI_CHAOS_RESTART") == "1" }

// exhaustion reports whether the case that fills the servers'
// max_connections may run: while it holds every connection, other clients
// of the servers are refused, so it runs only in the long run or on request.
func exhaustion() bool { return long() || os.Getenv("KANNUKI_CHAOS_EXHAUST") == "1" }

// hangGuard turns a hang into a failure; it is never a timing assertion.
const hangGuard = 10 * time.Second

func TestMain(m *testing.M) {
	// The driver logs every connection the chaos breaks; the tests look
	// at the errors the Locker returns instead.
	_ = mysql.SetLogger(&mysql.NopLogger{})
	if spec, ok := childSpecFromEnv(); ok {
		os.Exit(runChild(spec)) // a re-executed child of the overlap checker
	}
	goleak.VerifyTestMain(m, goleak.Cleanup(func(code int) {
		removeCLI()
		os.Exit(code)
	}))
}
