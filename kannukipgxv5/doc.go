// Package kannukipgxv5 is the Kannuki backend for PostgreSQL advisory locks
// on a *pgxpool.Pool (pgx v5): exclusive and shared, session and
// transaction-scoped.
//
//	pool, err := pgxpool.New(ctx, dsn)
//	if err != nil { ... }
//	defer pool.Close() // after the last lock is released
//	locker := kannuki.New(kannukipgxv5.New(pool, kannukipgxv5.Options{}), kannuki.Options{KeyPrefix: "myapp"})
//	err = locker.WithLock(ctx, "order/123", func(ctx context.Context) error { ... })
//
// Size the pool: a lock that had to wait pins a connection until it is
// released. Behind PgBouncer in transaction mode use transaction locks
// ([kannuki.InTx], [kannuki.LockTx]). A lost lock cancels fn's context
// with an error matching [kannuki.ErrLockLost].
//
// How it works, with measurements: DESIGN.md in this directory.
//
// # Pool size
//
// A session lock lives on one server session, so it needs a pool
// connection. Locks taken without waiting share a few connections
// ([Options.SharedConns]: by default half the pool's MaxConns, at least
// one); a lock that had to wait pins a connection of its own until
// Release, and so does every acquisition while it waits. With multiplexing
// off (SharedConns < 0) every held lock pins one. A connection goes back
// to the pool only when it is known to hold nothing; otherwise it is
// closed.
//
// Size the pool for the locks awaited at once (with multiplexing off, held
// at once) plus the shared connections and the application's other
// queries. When the pool is exhausted:
//
//   - a try (TryLock, Request.Wait 0) never waits for a connection another
//     caller uses: it runs on a shared connection when one can take it,
//     and otherwise fails at once with an error matching
//     [ErrPoolExhausted] (TryLock returns it as an error, not false:
//     whether the key is held is unknown);
//   - a timed wait spends its budget waiting for a connection first, then
//     for the lock, and fails no sooner than the budget: with
//     ErrPoolExhausted when no connection came, ErrNotAcquired when the
//     lock did not;
//   - a wait forever waits for a connection as long as its context allows;
//   - Held and Locks need a connection like any query.
//
// With a pool of one connection, a lock that has to wait while another
// lock of the process is held can never get a connection: give such calls
// a timeout, or a bigger pool. (With multiplexing off, the same goes for
// any second lock, a nested WithLock on another key say.)
//
// # Transaction-scoped locks
//
// [kannuki.LockTx] takes a lock inside a pgx.Tx the caller opened, and
// [kannuki.InTx] opens the transaction itself ([Backend.AcquireTx] and
// [Backend.RunTx]):
//
//	err := kannuki.InTx(ctx, locker, "invoice_numbers/7", func(ctx context.Context, tx pgx.Tx) error {
//		// read the last number, insert the next one
//		return nil
//	})
//
// The lock ends with the transaction, at COMMIT or ROLLBACK: nothing to
// release, no connection pinned after it, and it works behind PgBouncer in
// transaction mode. A timeout, a deadlock or a cancellation leaves the
// transaction usable, without the lock. A transaction that is closed,
// aborted, or not open on the server is an error matching
// [store.ErrInvalidArgument]. Taking the same
// key twice in one transaction succeeds; rolling back to a savepoint made
// before the lock was taken releases it.
//
// # PgBouncer
//
// In transaction mode (pool_mode=transaction) use transaction-scoped locks
// (tested through PgBouncer 1.18). Session locks (WithLock, Acquire, ...)
// are unsafe there and fail with an error matching [store.ErrUnsupported].
// PgBouncer before 1.21 does not follow the named prepared statements of
// pgx's default query exec mode (cache_statement) from one server session
// to the next: use simple_protocol (or exec), e.g.
//
//	postgres://app@pgbouncer:6432/db?default_query_exec_mode=simple_protocol
//
// In session mode (pool_mode=session) session locks are safe, but are
// refused too unless [Options.SessionPooler] is set: PgBouncer cannot be
// asked for its pool mode.
//
// # Lost locks
//
// When the server ends a session that holds locks (pg_terminate_backend, a
// shutdown, a restart), the socket watch tells the holder at once (on
// Linux, unless [Options.NoWatch]): fn's context is canceled with an error
// matching [kannuki.ErrLockLost], Handle.Lost is closed and EventLost is
// emitted. A loss that sends nothing, such as a
// network cut, is found by the keepalive (kannuki.Options.KeepaliveInterval)
// or the release. When a shared connection is lost, every lock on it is.
// The server may grant the lock to the next waiter before the holder
// hears: only fencing (a token the protected resource checks) closes that
// window.
//
// # Limits
//
//   - Advisory locks are per database; Held and Locks look at the current
//     database only.
//   - Every held and every waiting advisory lock takes an entry in the
//     server's shared lock table, shared by every client of the server:
//     nominally 7,808 with the defaults (12,784 measured on PostgreSQL
//     15). Beyond it a lock fails with an error matching
//     [kannuki.ErrCapacity], holds nothing and costs no other lock. To
//     hold N locks at once, set max_locks_per_transaction to at least
//     N / (max_connections + 22) with the default workers, plus a margin
//     for the other clients (it takes a server restart);
//     kannuki.Options.MaxHeld bounds the Locker before the server does.
//   - Timed waits longer than about 24.8 days (the largest lock_timeout)
//     are cut to that.
//   - pgxpool pings a connection that sat idle for more than a second
//     before handing it out (its default ShouldPing), one more round trip
//     for any query on a quiet pool.
//   - Do not take session advisory locks by hand on pool connections: a
//     connection that comes back from the pool holding the same key would
//     grant it re-entrantly.
package kannukipgxv5
