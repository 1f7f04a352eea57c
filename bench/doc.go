// Package bench measures Kannuki against the raw floor (the lock and unlock
// statements on one pinned connection) and against the Redis lock libraries
// github.com/bsm/redislock and github.com/go-redsync/redsync/v4, on the
// databases of the machine it runs on (see internal/testdb for the DSNs).
//
// Run builds a Report in one process: uncontended cycles, handoff under
// contention, throughput, connections and server statements per held lock
// and per waiter, and heap bytes per held lock. The command
// cmd/kannukibench writes it as BENCHMARKS.md. Candidates are interleaved
// in blocks (A, B, C, A, B, C, ...) so that load from other processes on a
// small machine hits them alike, and every figure is a median or a ratio
// to a floor measured in the same run.
//
// The go test benchmarks of this package (bench_test.go) time the same
// uncontended cycles one candidate at a time, for CI and quick checks:
//
//	go test -run '^$' -bench . -benchtime=1x ./...
package bench
