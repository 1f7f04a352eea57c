// Package chaos is Kannuki's fault and load suite: the tests in this
// directory run lock cycles against every backend while processes are
// killed, database sessions terminated, servers restarted, idle killers
// armed and connections exhausted, and feed hostile input to the backends
// and the CLI. They publish what they measured as Figures, which
// cmd/chaosreport turns into RELIABILITY.md.
//
// Run the short version (CI) with
//
//	go test -race ./...
//
// and the long one (100,000+ lock cycles, database restarts, max_connections
// exhaustion) with KANNUKI_CHAOS_LONG=1 or -chaos.long. The report:
//
//	go run ./cmd/chaosreport -out ../RELIABILITY.md          # short
//	go run ./cmd/chaosreport -long -out ../RELIABILITY.md    # long, with fuzzing
//
// The package itself holds only the Figure record shared by the tests and
// the report program; see the test files for the cases and how overlaps
// are detected (overlap_test.go, ledger_test.go).
package chaos
