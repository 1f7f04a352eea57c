// Package backendtest is the conformance suite every store.Backend must
// pass, in the manner of testing/slogtest: a backend's own tests describe
// the backend in a Harness and call Run.
//
//	func TestConformance(t *testing.T) {
//		dsn := os.Getenv("KANNUKI_PG_DSN")
//		backendtest.Run(t, backendtest.Harness{
//			// A fresh client per call: a pool of its own, sized for
//			// 16 concurrent requests (see Harness.New).
//			New: func(t testing.TB) store.Backend {
//				db, err := sql.Open("pgx", dsn)
//				if err == nil {
//					err = db.Ping()
//				}
//				if err != nil {
//					t.Skipf("no PostgreSQL at $KANNUKI_PG_DSN: %v", err)
//				}
//				db.SetMaxOpenConns(20)
//				t.Cleanup(func() { db.Close() })
//				return kannukipg.New(db, kannukipg.Options{})
//			},
//			Shared:       true,
//			MultiProcess: true,
//			// End the session that holds key, from a session of its own.
//			KillHolder: func(t testing.TB, key store.Key) {
//				terminateHolder(t, dsn, key) // your helper: pg_terminate_backend on pg_locks' pid
//			},
//		})
//	}
//
// Run runs these cases as subtests, each on keys of its own (the test
// name plus a random suffix), so several test binaries may share one
// database:
//
//   - Exclusion: 16 goroutines in each of 3 clients (InProcess) and in each
//     of 3 OS processes (CrossProcess, when MultiProcess) take one key
//     Harness.Cycles times in all, mixing waits forever, bounded waits and
//     single tries. Inside the lock each holder creates a marker file with
//     O_CREATE|O_EXCL (EEXIST means two holders overlapped), bumps a counter
//     file and removes the marker; at the end the counter equals the cycles.
//     Where leases are store.Relockers, one release in three is a Relock,
//     and a lock it takes again is entered once more.
//   - Try, Timeout, Cancel, Deadline, Handoff, Release: the Request and
//     Lease contract: a try fails at once on a held key (also from the
//     holder's own Backend: backends are not re-entrant); a bounded wait
//     returns ErrNotAcquired no sooner than its budget; a cancelled or
//     expired context ends a wait with the context's error and leaves
//     nothing held; a waiter is handed the lock when the holder releases; a
//     lease outlives its acquiring context and releases with a cancelled one.
//   - Relock (leases that are store.Relockers): with nobody waiting the
//     lock is taken again, in either mode; a session waiting in the store
//     gets the lock first and Relock returns no lease; a lost lock is
//     reported (ErrLockLost) and not taken again.
//   - Shared: readers together, writers excluded both ways, nothing left
//     behind; or ErrUnsupported when Harness.Shared is false.
//   - Crash (MultiProcess): a child process holding the key is killed with
//     SIGKILL; a waiter here then gets the key.
//   - LockLoss (KillHolder set): through a Locker with a 100 ms keepalive,
//     fn's context is cancelled with cause ErrLockLost and WithLock returns
//     an error matching ErrLockLost; a Handle's Lost channel closes.
//   - NoLeakedLocks: Harness.Trials acquisitions cancelled before, during,
//     around and after the wait, and Harness.Trials timed-out waits: every
//     reported success really holds the key (seen from a third session),
//     every error holds nothing, and no key stays held.
//   - Keys: invalid keys (empty, 1 MiB, NUL, invalid UTF-8) fail with
//     ErrInvalidKey; keys with quotes, comment markers, SQL, placeholders,
//     path traversal, unicode, and long keys lock and exclude; keys a naive
//     escaping would merge stay distinct.
//   - Locker: nil fn and negative timeouts fail with ErrInvalidArgument;
//     fn's error comes back; TryLock reports (false, nil) when held; a panic
//     releases the lock and propagates; nested calls with fn's context are
//     re-entrant; another goroutine waits like for a mutex; Handle.Release
//     is idempotent and works with a cancelled context.
//   - NoLeakedGoroutines: no goroutine started during the suite outlives it
//     (closed pools included). It sees the whole process, so do not run the
//     conformance test in parallel with others.
//
// # Requirements on the harness
//
// New is called many times per case and each result is used as an
// independent client; every Backend it returns must reach the same store.
// Close pools with t.Cleanup on the t New receives. The exclusion cases
// make 48 requests at once, 16 per client; see Harness.New on pool sizes.
// Run the suite once per test (several harnesses: one subtest each).
//
// Checks that a key is free use HeldOnServer (by default Backend.Held on a
// client of its own). After a successful Release a key must be free at once;
// after an Acquire that failed, or a killed session or process, the suite
// allows 3 s for the store to clean up, because a backend may have to
// destroy a connection whose lock state it cannot know, and the server ends
// that session asynchronously.
//
// The suite asserts no upper time bounds except generous hang guards (30 s
// per wait), so it does not flake on a loaded machine. With -short the
// default loop counts drop.
//
// # Child processes
//
// The cross-process cases re-execute the test binary (os.Args[0]) with
// -test.run selecting exactly the test that called Run and the environment
// variable KANNUKI_BACKENDTEST_CHILD describing the child's role. The child
// inherits the environment (DSNs and the like), so a harness that reads its
// configuration from the environment works unchanged. When Run sees that
// variable it plays the child's role only, then ends the test (it does not
// return); a child never starts children. Children are killed when their
// case ends or after 2 minutes, and a failing child's output is reported by
// the parent. A harness whose New depends on something other than the
// environment (a temporary directory, say) must pass it to the children
// through an environment variable; see the flock test of this package.
package backendtest
