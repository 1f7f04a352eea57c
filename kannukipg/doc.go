// Package kannukipg is the PostgreSQL backend of Kannuki over database/sql:
// session advisory locks (pg_advisory_lock and friends, exclusive and
// shared) through any driver, tested with pgx/stdlib and lib/pq.
//
//	db, err := sql.Open("pgx", dsn) // or "postgres" (lib/pq)
//	...
//	l := kannuki.New(kannukipg.New(db, kannukipg.Options{}), kannuki.Options{KeyPrefix: "myapp"})
//	err = l.WithLock(ctx, "order/123", func(ctx context.Context) error { ... })
//
// # One connection per lock
//
// A session advisory lock belongs to one database session, so every held
// lock pins one connection of the pool (a *sql.Conn) until Release. That
// connection goes back to the pool only after pg_advisory_unlock (or
// pg_advisory_unlock_shared for a shared lock) returned true on it.
// Whenever that cannot be shown (the unlock failed, returned false, timed
// out, or a statement's outcome is unknown) the connection is destroyed
// instead, which ends the session and with it any lock it may hold: a
// pooled connection never carries a lock.
//
// # Taking a lock: round trips
//
// Acquire sends one try (pg_try_advisory_lock), one round trip. Only when
// the key is held and the request may wait does it send a second, waiting
// statement, which the server holds until the lock is granted; a bounded
// wait is bounded on the server, by lock_timeout set transaction-locally
// in the same statement (set_config(..., true)), so it never leaks to the
// pooled connection. There is no polling: while a caller waits, the server
// runs one statement for it. The waiting statement carries the key in an
// SQL comment, so pg_stat_activity shows who waits on what. Release is one
// round trip.
//
// A handoff between goroutines of one Locker (its local queue) is one round
// trip too: the lease is a store.Relocker, whose Relock sends the unlock
// and the next goroutine's try as one statement (internal/pgsql.Relock).
// PostgreSQL gives a released lock to a session already waiting for it
// before the try runs, so a local goroutine never takes the key from
// another process's waiter.
//
// PostgreSQL can report lock_timeout (SQLSTATE 55P03) for a lock it
// granted at the last moment; the Backend then asks pg_locks whether its
// session holds the lock before reporting failure. A deadlock (40P01)
// becomes store.ErrDeadlock. Deadlocks are rare here: a waiting
// kannukipg session holds no other advisory lock, so a cycle needs
// something else waiting on it (CREATE INDEX CONCURRENTLY waits for every
// open transaction, a waiting statement included).
//
// The try and the unlock run in one of three statement forms (see
// StatementForm). FormAuto picks FormBound on pgx/stdlib (constant text,
// ids bound as parameters, prepared once per connection by pgx's own
// statement cache) and FormPrepared on other drivers (the same constant
// texts, prepared once per driver connection by the Backend through
// Conn.Raw). Both read the boolean from the rows-affected count ("SELECT 1
// WHERE pg_try_advisory_lock($1)"), so no result set is read and
// database/sql starts no goroutine for it. FormLiteral (parameterless
// text, id as a literal, key in a comment: one round trip on the simple
// protocol on every driver, nothing cached) stays available, and is what
// waits and the keepalive use.
//
// Measured on the 2-core development machine while other test suites
// loaded it: uncontended lock+unlock cycles through Acquire and Release,
// interleaved cycle by cycle with the raw floor so that load hits both
// alike, medians of 40 rounds of 100 cycles, three runs (TestCompareForms
// in the integration module:
// KANNUKI_PG_COMPARE=1 go test -run TestCompareForms -v ./pgsql). The
// floor is the fastest raw form on one pinned connection: both statements
// prepared once and run with Exec. Ratios to it (higher is better):
//
//	                          pgx/stdlib    lib/pq
//	FormBound                 0.92-0.96     0.37-0.48 (two round trips)
//	FormPrepared              0.84-0.96     0.78-1.00
//	FormLiteral               0.67-0.84     0.75-0.95
//	FormAuto, cancelable ctx  0.91-0.95     0.81-1.00
//
// Against the usual floor that reads the boolean as a row (QueryRow on
// the prepared statements) FormAuto runs at 0.97-1.12. The gap to a
// single pinned connection is the pool: every lock takes a connection
// from the *sql.DB and gives it back. The literal form costs the server a
// parse and a plan per statement, which shows as soon as the database is
// busy (pgbench on the same machine: simple protocol at 0.83x of
// prepared).
//
// # Cancellation
//
// The Backend never lets the driver cancel one of its statements: both
// drivers answer a canceled context by closing the connection (pgx/stdlib
// sets a past deadline on its socket; lib/pq sends a cancel request, then
// closes), after which the state of the lock is unknown and, with pgx, the
// server session may stay queued for the lock with no one to read the
// answer. Instead:
//
//   - A context deadline sooner than the wait becomes the wait's
//     lock_timeout: the server ends the wait itself at the deadline.
//   - When the context is canceled, a second pooled connection sends
//     pg_cancel_backend to the waiting session (again, until the statement
//     returns: a cancel that arrives before the statement starts is
//     ignored by the server). Then, on the still usable pinned connection,
//     the Backend checks pg_locks and unlocks if the grant won the race,
//     so that when Acquire returns an error nothing is held. The connection
//     goes back to the pool.
//   - If no second connection is free (see "Pool size") the driver's own
//     cancellation is used and the pinned connection destroyed. With
//     pgx/stdlib the server session may then stay in the lock's queue
//     until it is granted or its lock_timeout ends, take the lock for an
//     instant and exit; give the pool one spare connection to avoid that.
//
// The first try, the pid lookup and the clean-up run to completion
// whatever the context does, bounded by Options.ReleaseTimeout, so that
// their outcome is always known. On pgx/stdlib the try, the unlock and the
// relock are bounded through the connection's socket: a watchdog shared by
// the Backend's leases gives the socket a deadline in the past when a
// statement is still running after ReleaseTimeout, and the connection is
// destroyed. The statements themselves run on a context that cannot end,
// so pgx sets up no cancellation watch for them. On lib/pq they have no
// bound of their own (TCP keepalive ends a dead connection).
//
// # Release and keepalive
//
// Release works with a canceled context: it runs detached from the
// context's cancellation. A false unlock or a dead session gives an error
// matching store.ErrLockLost. The lease's Check (store.Checker, called
// by the Locker's keepalive) is one round trip on the pinned connection
// ("SELECT 1" with the key comment); a failure destroys the connection
// and reports the lock lost, so that pg_terminate_backend on the holder is
// noticed within one keepalive interval where the socket watch (below)
// does not notice it sooner.
//
// On pgx/stdlib the try, the unlock and the relock are bounded by
// ReleaseTimeout (a socket deadline, cheap). On other drivers they are not
// bounded by a timer: lib/pq starts a goroutine for every statement whose
// context can end (measured at 15-20% of uncontended throughput on the
// loaded 2-core machine) and never interrupts a blocked read anyway, so a
// timer would not bound a dead network; TCP keepalive does. Neither
// statement waits on the server.
//
// # Socket watch
//
// A held lock's connection runs no statement between the grant and the
// release, apart from the keepalive, and the server sends it nothing
// unless its session is ending: pg_terminate_backend, a shutdown or a
// restart sends a FATAL error and closes the socket. So while a lock is
// held and no statement runs, its socket is watched, by one epoll
// instance and one goroutine per Backend (internal/sockwatch), not a
// goroutine or timer per lock. When the socket turns readable, the
// lock is lost or at best in doubt: the Handle is told at once (fn's
// context canceled with store.ErrLockLost, Handle.Lost closed,
// EventLost) and then the connection is destroyed, which ends the session
// if it was not ending. Nothing is ever read from the socket behind the
// driver's back; a confirming statement first would give the server time
// to grant the lock to the next waiter before the holder is told. The
// watch is armed once the lock has been held for a millisecond
// (sockwatch.DefaultDelay: arming and disarming cost two system calls, a
// few per cent of a lock held and given back at once; news that came
// meanwhile is heard as the watch is armed) and disarmed before every statement of
// the lease and before its connection is pooled or destroyed. Measured on
// the loaded 2-core development machine over 300 session kills on
// pgx/stdlib, from sending pg_terminate_backend to fn's context cancel:
// min 0.6 ms, median 1.1 ms, p99 6.3 ms, max 12 ms; with the watch off and
// KeepaliveInterval 100 ms, 91 ms, 100 ms, 104 ms, 105 ms
// (KANNUKI_PG_WATCH_LATENCY=300 go test -run TestWatchLatency -v ./pgsql
// in the integration module).
//
// On pgx/stdlib the socket is reached through Conn.Raw and needs nothing
// from the user. lib/pq does not expose its socket: give its connector a
// Dialer and the Backend the same Dialer (Options.Dialer); the Backend
// then finds each connection's socket by the client port its session
// reports (one query the first time a connection holds a lock). A lib/pq
// pool without a Dialer, a connection over a Unix socket, one through a
// proxy or NAT that changes the client port, and any driver that hides its
// socket get no watch: a lost lock is then found by the keepalive (within
// kannuki.Options.KeepaliveInterval, 5 s by default) or the release.
// Options.NoWatch turns the watch off.
//
// The watch tells the holder what the server already did: by the time
// the news arrives, another session may have been granted the lock (the
// server grants a waiter as the killed session ends). That window, the
// server-to-client latency, is what a fencing token closes.
//
// # Failed statements: not granted, or in doubt
//
// Whenever the Backend itself destroys the connection of a held lock
// (a failed keepalive, an unlock or relock that failed, timed out or was
// cut short by the socket watchdog, a watch that found the session
// ended), the lease tells its Handle before the destroying call returns
// (store.LossWatcher): no lease learns of such a loss from a later
// keepalive. A failure of a try or a wait is one of three kinds:
//
// These rules are kannukipgxv5's as well (internal/pgsql, Settle):
//
//   - Not granted: PostgreSQL refused before granting anything. Only
//     SQLSTATE 53200 (out of shared memory: the lock table is full) is of
//     this kind. The key is unlocked once on the session to be sure (an
//     unlock needs no room in the table; a pg_locks query would fail the
//     same way), the connection goes back to the pool, no other lock is
//     touched, and the error matches store.ErrCapacity (the Locker
//     reports kannuki.ReasonCapacity and how many locks it holds). A
//     transaction lock (AcquireTx) refused this way leaves its transaction
//     aborted when the try failed (roll it back), usable when the wait did.
//   - Answered, maybe granted: the server answered with another SQLSTATE
//     (55P03 lock_timeout, 40P01 deadlock, 57014 canceled, ...), to a try
//     or a wait. The grant can have come at the last moment, so the
//     Backend asks the session whether it holds the lock and unlocks it if
//     so before pooling the connection (a 55P03 that came with the grant
//     hands the lock out); if that fails, the connection is destroyed.
//   - In doubt: no answer (a lost socket, a timeout, a statement cut short,
//     the driver's own cancellation) or an answer that ended the session
//     (class 08, 57P01-57P05). The connection is destroyed, which frees
//     whatever its session held.
//
// A relock whose try fails has given its lock back already and is
// destroyed as in doubt, which costs only its own connection. The
// SQLSTATE is read through the SQLState method both drivers' errors have,
// without importing a driver.
//
// # Pool size
//
// Every held lock and every waiting Acquire pins one connection. A call
// that finds no free connection (none idle, MaxOpenConns reached) does not
// wait for one beyond its own budget, as in kannukipgxv5 and kannukimysql:
// a try (Wait 0) fails at once, a bounded wait waits up to its Wait, a
// WaitForever request as long as its context allows. Running out gives an
// error matching both ErrNoConnection and store.ErrNotAcquired
// (goroutines contending for one key through a small pool queue for a
// connection before they queue on the server). Options.ConnWait bounds
// only getting a connection the pool can give at once (a dial, pgx/stdlib's
// ping of a reused connection), whatever the budget. In
// a pool of 1, a goroutine that holds a lock and asks for another one
// with WaitForever and no deadline waits forever, like a mutex locked
// twice. Size MaxOpenConns for the locks held and awaited at once, plus
// one connection to cancel waits, plus the application's own queries.
//
// pgx/stdlib pings a connection that was idle for more than a second
// before handing it out (one round trip; see stdlib.OptionShouldPing).
// The Backend never cancels its pool requests with the caller's context,
// because a cancel during that ping or during a dial closes a healthy
// connection and, under a storm of cancellations, empties the pool; a
// caller whose context ends while the pool is exhausted returns at once,
// and the connection, when it comes, goes straight back to the pool.
//
// # Introspection
//
// Held reports whether any session of the current database holds a key
// (pg_locks is cluster-wide; advisory keys are per database). Locks lists
// the advisory locks of the current database, with the key read from the
// Kannuki comment of each session's current statement: always for a
// waiting session, for a holder once its keepalive ran.
//
// # Transaction-scoped locks
//
// kannuki.LockTx locks inside a *sql.Tx the caller opened and
// kannuki.InTx opens one itself (Backend.AcquireTx, Backend.RunTx), with
// pg_advisory_xact_lock (and _shared): the lock ends at COMMIT or
// ROLLBACK, nothing needs releasing, no connection stays pinned after the
// transaction, and it works behind PgBouncer in transaction pooling mode.
// The statements are parameterless (simple protocol, several in one text)
// on both drivers. A try is one round trip: a SAVEPOINT, which fails
// unless the session really is in a transaction block, and
// pg_try_advisory_xact_lock. A wait runs inside a SAVEPOINT with a
// lock_timeout of its own (0 when waiting forever) and restores the
// caller's, so a timeout, a deadlock (store.ErrDeadlock) or a
// cancellation rolls back to the savepoint and leaves the transaction
// usable, without the lock, its lock_timeout as it was. A cancellation
// goes through pg_cancel_backend from a spare connection, as for session
// locks; a grant that raced it is rolled back with the savepoint, so
// AcquireTx returns nil exactly when the transaction holds the lock. A
// transaction that is finished, aborted, or not open on the server is an
// error matching store.ErrInvalidArgument, never a silent no-op.
//
// Behind PgBouncer in transaction mode (1.18 tested), use these and not
// session locks. pgx/stdlib needs default_query_exec_mode=simple_protocol
// (or exec) in the DSN, since its default mode prepares named statements
// that PgBouncer before 1.21 does not carry from one server session to the
// next. lib/pq needs binary_parameters=yes: otherwise it prepares each
// statement with parameters in one round trip and runs it in the next,
// which PgBouncer may send to another server session outside a
// transaction ("unnamed prepared statement does not exist"); inside one
// it works either way.
//
// # Limits
//
// Every held advisory lock takes a slot in the server's shared lock table,
// which has room for max_locks_per_transaction x (max_connections +
// max_prepared_transactions + the background workers) locks in all (7,808
// with the defaults; it grows into spare shared memory, so more fit in
// practice: 12,784 with the defaults on PostgreSQL 15, and a throwaway
// cluster with max_locks_per_transaction 10 and max_connections 40 took
// 848), for every client of the server together; beyond that, lock
// requests fail with "out of shared memory", which the Backend reports as
// store.ErrCapacity without costing any held lock (see above). Since
// each kannukipg lock also pins a connection, max_connections usually runs
// out first; kannuki.Options.MaxHeld bounds one process. Session
// locks need the session: behind PgBouncer in transaction pooling mode
// they do not work, silently: the lock stays on a server session that
// PgBouncer lends to other clients, which are then granted the same key
// too, and the unlock may run on another session. On pgx/stdlib the first
// Acquire notices such a pooler (the server process differs from the one
// announced at connect) and session locks then fail with an error matching
// store.ErrUnsupported (Options.SessionPooler declares a pooler in
// session mode); lib/pq does not tell the announced process, so there the
// pooler goes unnoticed. Use transaction-scoped locks behind such a
// pooler, or session pooling, or a direct connection. A
// statement_timeout set for the role or database also ends waits longer
// than it, with an error that is not ErrNotAcquired; set it to 0 for the
// locking pool's role, or keep waits shorter.
package kannukipg
