// Package kannukipgxv5 is the Kannuki backend for PostgreSQL on a
// *pgxpool.Pool (pgx v5): session-level advisory locks, exclusive and
// shared, taken and given back in one round trip each, and
// transaction-scoped locks inside a pgx.Tx (see Transaction-scoped locks).
//
//	pool, err := pgxpool.New(ctx, dsn)
//	...
//	locker := kannuki.New(kannukipgxv5.New(pool, kannukipgxv5.Options{}), kannuki.Options{KeyPrefix: "myapp"})
//	err = locker.WithLock(ctx, "order/123", func(ctx context.Context) error { ... })
//
// # Connections
//
// A session lock lives on one server session. A connection goes back to
// the pool only when it is known to hold nothing: after an unlock that
// returned true, a try that was refused, or a wait that ended without the
// lock. Whenever that is in doubt (the unlock returned false or failed,
// the connection broke, the server did not answer within
// Options.ReleaseTimeout) the connection is taken out of the pool and
// closed, and the server frees what the session held when it ends it.
// pgxpool.Conn.Release alone would hand the session, locks included, to
// the next user of the pool.
//
// Locks taken without waiting share a few connections (see
// Multiplexing); a lock that had to wait pins a connection of its own from
// Acquire to Release, and so does every acquisition while it waits. With
// multiplexing off (Options.SharedConns < 0) every held lock pins a
// connection of its own.
//
// Size the pool for the locks awaited at once (and, with multiplexing off,
// held at once) plus the shared connections and the application's other
// queries. When the pool is exhausted:
//
//   - a try (Request.Wait 0, TryLock) does not wait for a connection
//     another caller uses: it runs on a shared connection when one can
//     take it, and otherwise fails at once with an error matching
//     store.ErrPoolExhausted (the Locker's TryLock reports it as an
//     error: whether the key is held is unknown);
//   - a timed wait spends its budget waiting for a connection first, then
//     for the lock, and fails with ErrPoolExhausted when no connection came,
//     or ErrNotAcquired when the lock did not, no sooner than the budget;
//   - a wait forever waits for a connection as long as its context allows;
//   - Held and Locks need a connection like any query.
//
// With a pool of one connection, a lock that has to wait while another
// lock of the process is held can never get a connection: give such calls
// a timeout, or a bigger pool. (With multiplexing off, the same goes for
// any second lock, a nested WithLock on another key say.)
//
// # Multiplexing
//
// Many held locks share few sessions: Acquire first tries the lock
// (pg_try_advisory_lock, which never waits) on a shared connection, one of
// at most Options.SharedConns pool connections (by default half the
// pool's MaxConns, at least one) that hold locks for many callers at
// once. Only such statements run there, one at a time: the try, the
// unlock, the keepalive and the clean-up checks, each bounded by
// Options.ReleaseTimeout (a deadline on the connection's socket) and
// never interrupted by a caller's context, since an interrupted statement
// would leave every lock on the session in doubt. A canceled context
// still ends an Acquire that is queued for a shared connection at once;
// one whose try is already sent waits for its answer (a round trip) and
// undoes a grant on the same session before it returns. When the try
// finds the lock held and the request may wait, the wait runs on a
// connection of its own, as without multiplexing, and the lock stays
// there until Release: a wait can last any time, and its connection would
// stay pinned by the lock anyway.
//
// A shared connection is taken from the pool when the set has no idle
// one (no statement running) and is below its bound, and goes back to the
// pool when its last lock is released. Ten thousand goroutines holding a
// distinct key each at once hold them on 8 sessions of a pool of 16
// (TestMuxTenThousand). A smaller bound means fewer sessions but more
// callers queued per connection: with a quarter of the pool instead of
// half, the throughput figure below fell to about 0.7x.
//
// PostgreSQL counts a session's advisory locks re-entrantly: a session
// that holds a key is granted it again. So a key never goes on a shared
// connection that holds it (in any mode) or is trying it: the backend
// keeps the books. A try for a key this process holds in a conflicting
// mode on a shared connection is refused from the books, without a round
// trip; shared holders of one key from one process sit on distinct
// sessions.
//
// The keepalive is shared too: Check on a lease succeeds without a round
// trip when another statement on the same connection succeeded within
// the last quarter of the time since that lease's previous check, so a
// shared connection sees a few keepalive round trips per Locker
// KeepaliveInterval however many locks it holds (10,000 handles, 20,000
// checks: 30-55 round trips), and a loss shows at most a quarter of an
// interval later than with a round trip per lock.
//
// When a statement on a shared connection fails in a way that leaves its
// state in doubt (the connection broke or was terminated, no answer within
// Options.ReleaseTimeout, an unlock returned false) the connection is
// destroyed and every lease on it is lost: through a Locker every handle
// on it is told before the call that destroyed it returns (see Lost
// locks), and Check and Release return errors matching
// store.ErrLockLost. The one exception is the lease whose own unlock got
// no answer: its Release reports the failure (the lock goes with the
// session) rather than a loss. A server error on a try on a live
// connection (SQLSTATE 53200 when the lock table is full, a
// pg_cancel_backend, a lost prepared statement) costs nothing: the key is
// unlocked once on the session, which undoes a grant, and the connection
// keeps its other locks (see A full lock table).
//
// Multiplexing costs nothing measurable on an uncontended cycle (the
// same two round trips; BenchmarkPairedMux). Under concurrency the
// statements of many callers queue for fewer connections: 16 goroutines
// cycling distinct keys on a pool of 16 ran 0.83-0.98x (median 0.91) the
// cycles per second of one connection each on the development machine
// (BenchmarkParallelMux, -count 5).
// Behind a transaction pooler session locks are refused before any
// connection is shared (see PgBouncer).
//
// # Statements and round trips
//
// Acquire first sends "SELECT pg_try_advisory_lock($1::bigint)" (or the
// _shared or two-int4 form), a constant text with a bound parameter, so
// pgx's per-connection statement cache (the default query exec mode)
// prepares it once per connection and then runs it in one round trip
// whatever the key. The release is the same with pg_advisory_unlock. An
// uncontended lock+unlock is therefore two round trips, like the raw floor.
// Query exec modes Exec and SimpleProtocol are one round trip per statement
// too; DescribeExec costs two.
//
// Only when the try is refused and the request may wait does Acquire send
// the waiting statement of internal/pgsql: the id as a literal, the key in
// a sanitized SQL comment, over the simple protocol. It is one statement for
// the whole wait (the server queues the session and grants the lock the
// moment it is free: handoff within a round trip, no polling), and
// pg_stat_activity shows it with the key while it waits. Carrying the key in
// the text of the cached statements instead would miss the statement cache
// on every new key and cost a prepare each time. Measured on the
// development machine (two shared, busy cores; medians of -count=5 in two
// runs), lock+unlock cycles per second on one connection relative to the
// cached, bound floor (4,400-5,800/s): simple protocol with literal and
// comment 0.74-0.76x; cached with a per-key comment 0.13-0.36x. Acquire
// plus Release through this backend: 0.93x the floor on the same
// connection (BenchmarkPaired).
//
// A handoff between goroutines of one Locker (its local queue) is one
// round trip too: the lease is a store.Relocker, and its Relock sends
// the unlock and the next goroutine's try as one statement,
// "SELECT CASE WHEN NOT u THEN 0 WHEN pg_try_advisory_lock($1) THEN 2 ELSE
// 1 END FROM pg_advisory_unlock($1) u". PostgreSQL gives a released lock
// to a session already waiting for it before the try runs, so a local
// goroutine never takes the key from another process's waiter.
//
// Holders acquired without waiting show the key in pg_stat_activity, and so
// in Locks, once their first keepalive (Check) has run: Check sends the
// key's comment alone, an empty statement, as its one round trip. A shared
// connection holding several locks shows the comment of the last check
// only, so Locks names the locks of a session only when it holds one.
//
// # Waits, timeouts and cancellation
//
// A timed wait is bounded on the server by lock_timeout, set with
// set_config(..., is_local = true) in the same statement, so it ends with
// the statement and never stays on the pooled session. A context deadline
// that comes before the wait's end becomes the lock_timeout too.
// PostgreSQL may report lock_timeout (SQLSTATE 55P03) although the lock was
// granted; Acquire then asks the session whether it holds the lock and, if
// it does, returns the lease. A deadlock detected by the server (40P01)
// is returned as store.ErrDeadlock. A session statement_timeout shorter
// than the wait ends it too (ErrNotAcquired).
//
// An explicit cancellation of the context while waiting sends a PostgreSQL
// cancel request (a separate short connection) instead of letting pgx close
// the connection, which is what pgx v5.12.0 does by default for a canceled
// context (it returns at once and tears the connection down in the
// background, so the server may grant the lock to the dying session after
// Acquire has returned). The statement then ends with the grant or with
// SQLSTATE 57014, Acquire learns which, undoes a grant that raced the
// cancellation on the same session, and keeps the connection. When Acquire
// returns an error, its session holds nothing; only if the server stops
// answering (Options.ReleaseTimeout) or the connection breaks is the
// connection closed instead, and the server then frees the lock as it ends
// that session. Acquire returns no lease for a context that has ended. A
// cancellation takes as long as the server's answer to a cancel request (a
// new connection, a fork on the server: a median of 4.6 ms here); an
// expiring deadline needs no cancel request (Acquire returns about 1 ms
// after it: lock_timeout's millisecond resolution and the re-check).
//
// # Releases, keepalive and lost locks
//
// Release runs pg_advisory_unlock (pg_advisory_unlock_shared for shared
// locks) on the pinned connection, with its own timeout
// (Options.ReleaseTimeout) even when its context is already canceled, and
// checks the result: false means the session no longer held the lock, and
// Release reports an error matching store.ErrLockLost. A failed unlock
// on a broken session reports ErrLockLost too.
//
// Check, which the Locker calls every KeepaliveInterval, is one round trip
// on the pinned connection (shared among the leases of a shared
// connection, see Multiplexing); when it fails (pg_terminate_backend, a
// restarted server, a dead network) the connection is destroyed and the
// Locker cancels fn's context with ErrLockLost. The keepalive also keeps a
// holder's session from idle_session_timeout longer than the interval.
//
// # Lost locks
//
// The leases are kannuki.LossWatchers: whenever the backend itself
// destroys a connection that holds locks (a shared connection whose state
// is in doubt, a connection of its own whose keepalive failed) every
// lease on it is told in the same step, before the destroying call
// returns: through a Locker, fn's context is canceled with an error
// matching store.ErrLockLost, Handle.Lost is closed, Handle.Err reports
// it and EventLost is emitted. No lease learns of such a loss from a later
// keepalive.
//
// A session the server ends (pg_terminate_backend, a shutdown or a
// restart) is found by the socket watch, not only by the keepalive. While
// a connection holds locks and runs no statement, its socket must stay
// silent; on termination PostgreSQL sends a FATAL error and closes it. So
// each such connection (a lease's own, or a shared one) is watched by one
// poller per Backend (epoll on Linux, and one goroutine while anything is
// watched: no goroutine or timer per lock; 10,000 held locks cost the
// same goroutines as 100, TestWatchNoGoroutinePerLock). The watch is off
// while a statement runs and before a connection goes back to the pool or
// is closed. When a watched socket turns readable, the session is ending
// (PostgreSQL sends an idle session nothing else): every lease on the
// connection is told at once, and then the connection is destroyed. The
// backend never reads the socket itself, and sends no confirming
// statement first, which would give the server time to grant the lock to
// the next waiter before the holder is told.
// From pg_terminate_backend sent to fn's context canceled took a median
// of 0.7 ms, p99 5.2 ms, max 5.9 ms over 300 kills on the development
// machine, with multiplexing on and off alike; without the watch it takes
// up to a keepalive interval (with a 1 s interval, a median of 1.0 s).
// What remains is the window between the server freeing the lock (and
// granting it to the next waiter) and the holder's process reading the
// news: fencing (a token the protected resource checks) closes it. A
// network cut that sends nothing is found by the keepalive only. The
// watch costs an uncontended cycle two epoll_ctl calls, one to arm after
// the grant and one to disarm before the unlock (about 4 µs;
// BenchmarkPairedWatch: 0.92-0.95x the cycles per second of NoWatch on
// the development machine). Options.NoWatch turns the watch off; a lost
// lock is then found by the keepalive or the release. On platforms
// without epoll the watch is off.
//
// # A full lock table
//
// Every held advisory lock, and every waiting one, takes an entry in the
// server's shared lock table, shared by every client of the server. It
// holds max_locks_per_transaction x (max_connections +
// max_prepared_transactions + the background workers:
// autovacuum_max_workers + 1 + max_worker_processes + max_wal_senders)
// entries, 7,808 with the defaults, and grows into spare shared memory
// while some is left: measured on throwaway PostgreSQL 15 clusters, a
// session held 12,784 advisory locks with the defaults (64 and 100), 24,643
// with max_locks_per_transaction 128, 48,352 with 256, and 23,232 with
// max_connections 200, about 1.6 times the nominal size. Count on the
// nominal size only (the spare memory serves other structures too) and
// leave room for the other clients: to hold N locks at once, set
// max_locks_per_transaction to at least N / (max_connections + 22) with
// the default workers, plus a margin; the setting takes a server restart.
// With multiplexing the locks a process holds are bounded by this table,
// not by its connections; kannuki.Options.MaxHeld bounds them in the
// Locker, before the server does.
//
// When the table is full a try or a wait fails with SQLSTATE 53200 ("out
// of shared memory") before anything is granted. The caller gets an error
// matching store.ErrCapacity (through a Locker a *kannuki.NotAcquiredError
// with Reason kannuki.ReasonCapacity) that names max_locks_per_transaction;
// the connection is kept, and no lock already held is lost
// (TestLockTableFull: every lock granted before the first refusal is still
// held, and once some are released new ones are granted). A session cannot
// even start on a full table, so a request that needs a new pool
// connection then gets the same error.
//
// How a failed lock statement is judged (failure.go):
//
//   - 53200 on a try, a wait or the try of a relock: not granted. The key is
//     unlocked once on the session to be sure (an unlock needs no room in
//     the table; a pg_locks query would fail the same way), the
//     connection and its other locks are kept, the caller gets
//     store.ErrCapacity. A relock whose try failed so has released its
//     lock and does not retake it.
//   - Another server error on a live connection within
//     Options.ReleaseTimeout (55P03 lock_timeout, 40P01 deadlock, 57014
//     canceled, 26000 a prepared statement gone): maybe granted just
//     before the error. On a shared connection the key's unlock undoes a
//     grant; on a connection of its own pg_locks is asked, and a 55P03 that
//     came with a grant hands the lock out. The connection is kept.
//   - In doubt: no answer (a network error, EOF), a FATAL error (57P01
//     pg_terminate_backend, a shutdown) that closed the connection, a
//     statement past Options.ReleaseTimeout, a settling statement that
//     failed too, an unlock that returned false. The connection is
//     destroyed and every lease on it told at once.
//
// # Transaction-scoped locks
//
// kannuki.LockTx takes a lock inside a pgx.Tx the caller opened, and
// kannuki.InTx opens the transaction itself (Backend.AcquireTx and
// Backend.RunTx):
//
//	err := kannuki.InTx(ctx, locker, "invoice_numbers/7", func(ctx context.Context, tx pgx.Tx) error {
//		// read the last number, insert the next one
//		return nil
//	})
//
// They use pg_advisory_xact_lock (and _shared): the lock ends with the
// transaction, at COMMIT or ROLLBACK, so there is nothing to release, no
// connection stays pinned after the transaction, and they work behind
// PgBouncer in transaction pooling mode. A try is one round trip
// (pg_try_advisory_xact_lock). A wait runs inside a SAVEPOINT with a
// lock_timeout of its own and puts the caller's lock_timeout back, so a
// timeout, a deadlock (store.ErrDeadlock) or a cancellation rolls back
// to the savepoint and leaves the transaction usable, without the lock and
// with its settings as they were. AcquireTx returns nil exactly when the
// transaction holds the lock (a grant that races a cancellation is rolled
// back with the savepoint). A transaction that is closed, aborted, or not
// open on the server is an error matching store.ErrInvalidArgument,
// never a silent no-op. Taking the same key twice in one transaction
// succeeds; rolling back to a savepoint made before the lock was taken
// (a nested pgx.Tx, say) releases it.
//
// # PgBouncer
//
// Behind PgBouncer in transaction mode (pool_mode=transaction) every
// transaction may run on another server session. Use transaction-scoped
// locks there; they exclude correctly (tested through PgBouncer 1.18).
// pgx's default query exec mode (cache_statement) prepares named
// statements, which PgBouncer before 1.21 does not follow from one server
// session to the next ("prepared statement ... already exists"): configure
// the pool with default_query_exec_mode=simple_protocol (or exec), e.g.
//
//	postgres://app@pgbouncer:6432/db?default_query_exec_mode=simple_protocol
//
// Kannuki's own transaction-lock statements need no prepared statements in
// any mode (no arguments, the simple protocol); the application's
// statements do.
//
// Session locks (WithLock, Acquire, ...) are unsafe behind a transaction
// pooler: the lock stays on a server session that PgBouncer then lends to
// other clients, which are granted the same key again, and the unlock may
// run on yet another session. Acquire therefore checks, on its first call,
// that the server process it talks to is the one announced when the
// connection opened; a pooler that shares server sessions announces its
// own. When they differ, session locks fail with an error matching
// store.ErrUnsupported. PgBouncer cannot be asked for its pool mode, so a
// pooler in session mode (pool_mode=session), where session locks are
// safe, is refused too: set Options.SessionPooler for it.
//
// # Limits
//
//   - Session locks need a session of their own: behind PgBouncer in
//     transaction mode the session, and the lock, change under the caller
//     (see PgBouncer above).
//   - Advisory locks are per database; Held and Locks look at the current
//     database only.
//   - Every held advisory lock and every waiting one takes an entry in the
//     server's shared lock table, shared by every client of the server:
//     12,784 locks in all with the defaults on PostgreSQL 15 (see A full
//     lock table for the sizing). With multiplexing the held locks are no
//     longer bounded by the connections but by this table: a try beyond
//     it fails with store.ErrCapacity and holds nothing, and costs no
//     other lock. Raise max_locks_per_transaction for more.
//   - Timed waits longer than about 24.8 days (the largest lock_timeout)
//     are cut to that.
//   - pgxpool pings a connection that sat idle for more than a second
//     before handing it out (its default ShouldPing), one more round trip
//     for any query on a quiet pool.
//   - Do not take session advisory locks by hand on pool connections: a
//     connection that comes back from the pool holding the same key would
//     grant it re-entrantly.
package kannukipgxv5
