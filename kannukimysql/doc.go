// Package kannukimysql is the MySQL / MariaDB backend of Kannuki, over
// database/sql, with the server's user-level locks (GET_LOCK, RELEASE_LOCK,
// IS_USED_LOCK). It is tested with github.com/go-sql-driver/mysql on
// MariaDB 10.11.
//
//	db, err := sql.Open("mysql", "app@tcp(db:3306)/app")
//	...
//	l := kannuki.New(kannukimysql.New(db, kannukimysql.Options{}), kannuki.Options{KeyPrefix: "myapp"})
//	err = l.WithLock(ctx, "order/123", func(ctx context.Context) error { ... })
//
// # What GET_LOCK gives, and what it does not
//
//   - Exclusive locks only. There are no shared (reader) locks: a request
//     with store.ModeShared fails with an error matching
//     store.ErrUnsupported. Use PostgreSQL (kannukipg) for reader locks.
//   - Session locks only. There are no transaction-scoped locks: a lock
//     outlives COMMIT and ROLLBACK and ends with Release or the session.
//   - The lock name is store.Key.Name: under the default key scheme
//     (keys.Ruby) the key itself when it fits in 64 bytes, else a
//     shortened prefix and its MD5, exactly as the Ruby kannuki gem does, so
//     Go and Rails processes exclude each other. Such a name has at most 64
//     characters, not bytes: 31 four-byte characters make 157 bytes, which
//     MariaDB takes; MySQL keeps lock names in utf8mb3 and refuses
//     characters outside the BMP (store.ErrInvalidKey). Names from other
//     schemes longer than 64 characters (MySQL's limit) or 192 bytes
//     (MariaDB's), empty, not UTF-8 or with a NUL byte are rejected with
//     store.ErrInvalidKey.
//   - Names are case-insensitive on MySQL 5.7 and later ("Order/1" and
//     "order/1" are one lock there) and case-sensitive on MariaDB (10.11
//     checked). Keep key case consistent.
//   - Locks live on one server and are not replicated. With replicas, every
//     client must lock on the primary; on Galera or another multi-writer
//     cluster, all lock traffic must go to a single node (GET_LOCK on two
//     nodes does not exclude), so point the lock pool at one writer.
//   - A lock belongs to the server session that took it, and the server
//     frees it when the session ends: a crashed process loses its locks as
//     soon as the server sees its connection close.
//
// # One connection per lock
//
// Acquire takes a connection from the pool and pins it for as long as the
// lock is held (a wait pins one too). The connection goes back to the pool
// only after RELEASE_LOCK answered 1, or after a try or a bounded wait that
// was refused (GET_LOCK answered 0: nothing held). In every other case (an
// error, an interrupted statement, 0 or NULL from RELEASE_LOCK) the
// connection is destroyed, which ends its session and any lock on it.
//
// Release works with a canceled context (bounded by
// Options.ReleaseTimeout) and returns an error matching
// store.ErrLockLost when RELEASE_LOCK shows that the session no longer
// held the lock. The lease's Check (the Locker's keepalive) asks
// "IS_USED_LOCK(name) <=> CONNECTION_ID()" on the pinned connection: one
// round trip; if the session was killed or the lock is gone it reports the
// loss and destroys the connection.
//
// A handoff between goroutines of one Locker (its local queue) is one round
// trip: the lease is a store.Relocker, whose Relock sends
// "SELECT IF(RELEASE_LOCK(name) = 1, IF(GET_LOCK(name, 0) = 1, 2, 1), 0)".
// The server gives a released lock to a session already waiting for it
// before the GET_LOCK runs, so a local goroutine never takes the key from
// another process's waiter.
//
// # Socket watch
//
// A connection that holds a lock runs no statement between the grant and
// the release, so the server has nothing to say to it unless the session
// ends: a KILL, a shutdown or a restart closes the socket. Nobody reads an idle connection, so without help the
// loss is found by the Locker's keepalive check, up to
// kannuki.Options.KeepaliveInterval (5 s by default) plus a round trip
// later, or by the release; meanwhile another session may already hold
// the key and fn still runs with a live context.
//
// With a Dialer the Backend watches every held connection's socket
// instead: one epoll instance per Backend (Linux), one goroutine while
// anything is watched, no goroutine or timer per lock, and nothing ever
// read from the socket by Kannuki. When a watched socket turns readable,
// the server is ending the session (it sends an idle session nothing
// else): the Locker is told at once (fn's context canceled with
// store.ErrLockLost, Handle.Lost closed, EventLost) and then the
// connection is destroyed. Nothing is read from the socket; a confirming
// statement first would give the server time to grant the lock to the
// next waiter before the holder is told. go-sql-driver/mysql does not expose its
// connections, so the application lets the Dialer make them, with two
// lines before the pool is opened:
//
//	d := &kannukimysql.Dialer{}
//	mysql.RegisterDialContext("tcp", d.DialContext)
//	...
//	b := kannukimysql.New(db, kannukimysql.Options{Dialer: d})
//
// (or Config.DialFunc = d.DialNetwork for a pool opened with
// mysql.NewConnector; Unix sockets are watched too). The Dialer knows each
// connection by the session id in the server's greeting, which the driver
// reads through it, and the Backend matches it with CONNECTION_ID(), which
// it learns once per connection anyway: no extra statement. Behind a proxy
// that answers the greeting itself (ProxySQL, MaxScale) the ids differ and
// nothing is watched. Only leases of a Locker are watched (Backend.Acquire
// alone has nobody to tell, and kannuki.InTx runs its statements on the
// held connection). Options.NoWatch turns the watch off; without a Dialer,
// on other systems than Linux, or for a connection the Dialer did not
// make, the keepalive bound above is what there is.
//
// Measured on the development machine (2 cores, MariaDB 10.11 on
// loopback, load 4): from just before a KILL is sent to fn's context
// cancel, median 0.3 ms and p99 0.8 to 6 ms over 300 kills with the
// Dialer; with the keepalive alone at a 100 ms interval, median 101 ms
// (TestWatchLatency in the integration module).
//
// The watch tells of a loss as soon as the socket does; the server may
// have granted the key to another session a moment before (between the
// session's end and the socket's news). Fence the work under a lock
// where that moment matters.
//
// # Capacity
//
// GET_LOCK has no lock table to fill. What one process holding very many
// locks runs into first is connections, since each held or awaited lock
// pins one (a server thread, about 110 KB of the server's memory on
// MariaDB 10.11, and about 8 KB and the driver's watcher goroutine in the
// client): the pool's
// SetMaxOpenConns (ErrNoConnection), then the server's
// max_connections (error 1040, "Too many connections"), the global
// max_user_connections (1203), or the account's MAX_USER_CONNECTIONS
// (1226). A connection the server refuses for want of connections,
// threads or memory fails Acquire with an error matching
// store.ErrCapacity that names the setting (the Locker reports it as
// kannuki.ReasonCapacity, with the count of locks it holds). Nothing was
// asked of the server for that key, and no held lock is touched: every
// lock granted before is still held. Size max_connections for the locks
// held at once across all processes, plus the waiters, plus the
// applications' own connections; kannuki.Options.MaxHeld bounds one
// Locker below that, without a round trip. Measured on a MariaDB 10.11
// of its own asked for max_connections 100,000: the server capped it at
// 16,770 (from its open_files_limit, 20,000), one process held 16,770
// locks (server RSS 2 GB, client heap 135 MiB), and the next Acquire got
// ErrCapacity naming max_connections; no lock was lost.
//
// # Waiting
//
// A try is GET_LOCK(name, 0). A wait is GET_LOCK(name, t), a single
// statement that the server blocks until the lock is granted or t runs
// out: no polling. t is never negative (MariaDB answers GET_LOCK(name, -1)
// with NULL at once, where MySQL would wait forever): a wait forever is a
// loop of waits of Options.MaxServerWait (1 hour). t is the exact budget
// left, in microseconds on MariaDB; MySQL truncates fractional timeouts, so
// there Kannuki sends whole seconds rounded up and ends a wait that runs
// past its budget itself. A context deadline bounds t too, so the server
// ends such a wait on time by itself.
//
// GET_LOCK answers NULL when the session was killed or the server failed:
// Acquire returns that as an error. Deadlocks among user locks (MariaDB
// error 1213, MySQL 3058) match store.ErrDeadlock; they need a session
// holding one lock while waiting for another, which Kannuki never does
// itself (one lock per connection).
//
// # Cancellation
//
// A wait bounded by the context's deadline ends on the server (GET_LOCK's
// own timeout is the time left). When the context is canceled during a
// wait, the statement is interrupted the way go-sql-driver/mysql does it:
// it closes the connection's socket. The server does not notice that while
// the session waits in GET_LOCK: the session goes on waiting, takes the
// lock when the holder releases it, and only then finds the client gone,
// so for a moment a third session sees the lock held by a session nobody
// listens to. So Kannuki learns each connection's CONNECTION_ID() once
// (cached with its statements), and after an interrupted statement it
// destroys the connection, sends KILL for its session from another pooled
// connection and waits until the process list no longer shows that
// session before Acquire returns. The outcome seen from any session right
// after Acquire returns is therefore the one Acquire reports: success and
// the lock held, or an error and nothing held. (The alternative, KILL
// QUERY from a second connection while the first stays open, needs two
// connections at once and so cannot work with a pool of one; ending the
// closed connection's session needs them one after the other.) The first
// try runs to
// completion (GET_LOCK(name, 0) never waits on the server) so its outcome
// is always known.
//
// Sending KILL needs a second connection. The interrupted connection is
// destroyed first, so even a pool of one connection has room for it,
// unless another goroutine takes that room first; then the KILL waits up to
// ReleaseTimeout for a connection, and if none comes Acquire returns the
// error anyway and the orphaned session ends by itself: when it gets the
// lock (and frees it at once) or when its GET_LOCK times out (at most
// MaxServerWait). KILL needs the same user as the pool's (or the CONNECTION
// ADMIN / SUPER privilege), which one DSN always gives.
//
// # Pool size
//
// Every held lock and every waiting Acquire pins one connection of the
// *sql.DB. When no connection is free (none idle, MaxOpenConns reached)
// Acquire does not wait for one beyond its own budget, as in kannukipg and
// kannukipgxv5: a try fails at once, a bounded wait waits up to its Wait,
// and a wait forever as long as its context allows; it then returns an
// error matching both ErrNoConnection and store.ErrNotAcquired.
// Options.ConnWait bounds only getting a connection the pool can give at
// once (a dial), whatever the budget. With SetMaxOpenConns(1), one lock
// held in the process blocks every other Acquire in it (a try fails at
// once, a wait at its timeout, with ErrNoConnection), and a canceled wait
// ends its session through the room its own destroyed connection leaves. With 2, one lock can be held and one
// Acquire wait at a time. Size the pool for the locks held plus the
// waiters at once, plus the application's own queries.
//
// # Round trips and statements
//
// Acquire costs one round trip when the lock is free (the first time a
// connection is used, two more: CONNECTION_ID() and the prepare), and
// Release one, whatever the DSN. go-sql-driver/mysql without
// interpolateParams=true spends two round trips on a statement with
// arguments (prepare, execute); so the fast-path statements (try, release,
// check) are prepared once per underlying connection, through sql.Conn.Raw,
// and kept in a cache bounded by the pool size (see sessions in the
// source). Waits, Held and Locks are parameterless text statements carrying
// the name as a hex literal, CONVERT(X'6d79' USING utf8mb4): the user's
// string is encoded, never spliced into SQL, and the process list shows
// which name a session waits for. Options.DisablePrepared uses the text
// form everywhere.
//
// The try, the release and the check run to completion without a
// cancelable context: go-sql-driver/mysql hands every statement run under
// a cancelable context to a watcher goroutine and back, which on a busy
// machine costs more than the rest of the cycle. They are bounded instead
// by a timer (Options.ReleaseTimeout) that, if it ever fires, ends the
// session with KILL from another connection.
//
// Measured on the development machine (2 cores, MariaDB 10.11 on loopback,
// shared with other test runs, load average 3-6): uncontended lock+unlock
// cycles on one key, candidates interleaved in blocks of 50 cycles, median
// ratio to the fastest raw floor of the same round (GET_LOCK(?, 0) and
// RELEASE_LOCK(?) on one pinned connection, prepared once: 5,000-6,000
// cycles/s), in three runs of
// "go test -run '^$' -bench Interleaved -benchtime 30x -count 5" in the
// integration module's mysql package:
//
//	Backend, default DSN                      0.93  0.86  0.94
//	Backend, interpolateParams=true           0.98  1.02  0.92
//	Backend, DisablePrepared (text)           0.77  0.77  0.63
//	floor: interpolateParams=true (text)      0.87  0.86  0.86
//	floor: default DSN with arguments         0.37  0.35  0.45  (two round trips)
//	floor: prepared, under a timeout context  0.58 to 0.92      (the driver's watcher)
//
// The text protocol costs the server a parse per statement, hence the
// prepared statements; a cancelable context costs the driver's watcher
// goroutine a round trip through the scheduler, hence the watchdog timer.
package kannukimysql
