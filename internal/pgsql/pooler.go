package pgsql

import (
	"fmt"
	"sync/atomic"

	"github.com/kannuki-go/kannuki/store"
)

// Session locks and transaction poolers. A session advisory lock belongs to
// the server session. Behind a pooler in transaction (or statement) mode,
// such as PgBouncer with pool_mode=transaction, a client connection has a
// server session only for one transaction: the lock would stay on a server
// session that the pooler then lends to other clients, which are granted
// the same key again, while the unlock may run on yet another session. No
// client can ask PgBouncer for its pool mode, but a pooler that shares
// server sessions answers the connection's startup itself, with a process
// id of its own: the id the driver was given at connect then differs from
// pg_backend_pid(). Direct connections (and plain TCP proxies) show the
// same number.

// BackendPID is the statement that tells the server process a connection
// reaches.
const BackendPID = "SELECT pg_backend_pid()"

// Values of PoolerCheck.state.
const (
	sessionUnknown int32 = iota
	sessionDirect
	sessionPooled
	sessionUnseen // the driver does not tell the announced process id
)

// PoolerCheck remembers whether a pool's connections reach PostgreSQL
// directly, as found on one of them: all connections of a pool go to the
// same place. The zero value knows nothing yet.
type PoolerCheck struct {
	state atomic.Int32
	pid   atomic.Uint32 // pg_backend_pid() when pooled, for the message
	seen  atomic.Uint32 // the process id the pooler announced
}

// Known reports whether a finding was recorded (or the check given up
// with Unseen) and, if so, whether a pooler that shares server sessions is
// in between.
func (p *PoolerCheck) Known() (known, pooled bool) {
	switch p.state.Load() {
	case sessionDirect, sessionUnseen:
		return true, false
	case sessionPooled:
		return true, true
	}
	return false, false
}

// Unseen gives the check up: the driver does not tell the process id it
// was announced at connect, so no pooler can be told apart.
func (p *PoolerCheck) Unseen() { p.state.Store(sessionUnseen) }

// Record notes a connection that reaches server process pid and was
// announced at connect as process announced.
func (p *PoolerCheck) Record(pid, announced uint32) {
	if pid == announced {
		p.state.Store(sessionDirect)
		return
	}
	p.pid.Store(pid)
	p.seen.Store(announced)
	p.state.Store(sessionPooled)
}

// Refusal is the error that refuses a session lock of key behind a pooler;
// pkg names the backend package. It matches store.ErrUnsupported.
func (p *PoolerCheck) Refusal(pkg, key string) error {
	return fmt.Errorf("%w: %s: session lock %q refused: the pool's connections go through a connection pooler "+
		"(server process %d, announced as %d); behind a pooler in transaction mode (PgBouncer pool_mode=transaction) a session lock "+
		"stays on a server session that other clients then use. Use transaction-scoped locks (kannuki.InTx, kannuki.LockTx), "+
		"or set Options.SessionPooler if the pooler gives each client its own session (pool_mode=session)",
		store.ErrUnsupported, pkg, key, p.pid.Load(), p.seen.Load())
}
