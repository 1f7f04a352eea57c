package kannukipgxv5

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/kannuki-go/kannuki/store"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/kannuki-go/kannuki"
	"github.com/kannuki-go/kannuki/internal/pgcluster"
	"github.com/kannuki-go/kannuki/internal/pgsql"
)

// tableFull is a throwaway cluster with a small shared lock table (about
// 600 advisory locks), an observer session opened before the table fills
// (a session cannot even start on a full table) and a warm pool.
type tableFull struct {
	cl    *pgcluster.Cluster
	obs   *pgx.Conn
	dbOID uint32
	pool  *pgxpool.Pool
}

func newTableFull(t *testing.T, maxConns int32) *tableFull {
	t.Helper()
	cl := pgcluster.Start(t, "max_locks_per_transaction=10", "max_connections=20")
	ctx, cancel := guardCtx()
	defer cancel()
	obs, err := pgx.Connect(ctx, cl.DSN)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = obs.Close(context.Background()) })
	f := &tableFull{cl: cl, obs: obs}
	if err := obs.QueryRow(ctx, "SELECT oid FROM pg_database WHERE datname = current_database()").Scan(&f.dbOID); err != nil {
		t.Fatal(err)
	}
	cfg, err := pgxpool.ParseConfig(cl.DSN)
	if err != nil {
		t.Fatal(err)
	}
	cfg.MaxConns = maxConns
	f.pool = openPool(t, cfg)
	// Open every connection now: on a full table no session can start.
	conns := make([]*pgxpool.Conn, maxConns)
	for i := range conns {
		if conns[i], err = f.pool.Acquire(ctx); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range conns {
		c.Release()
	}
	return f
}

// held returns the bigint advisory locks granted in the cluster's
// database, by id. The query names no shared catalog (pg_database), whose
// lock would need room in the full table.
func (f *tableFull) held(t *testing.T) map[int64]bool {
	t.Helper()
	ctx, cancel := guardCtx()
	defer cancel()
	rows, err := f.obs.Query(ctx, fmt.Sprintf(`SELECT classid::bigint, objid::bigint FROM pg_locks
		WHERE locktype = 'advisory' AND objsubid = 1 AND granted AND database = %d`, f.dbOID), pgx.QueryExecModeSimpleProtocol)
	if err != nil {
		t.Fatalf("observer: %v", err)
	}
	defer rows.Close()
	out := map[int64]bool{}
	for rows.Next() {
		var classid, objid int64
		if err := rows.Scan(&classid, &objid); err != nil {
			t.Fatalf("observer: %v", err)
		}
		out[int64(uint64(classid)<<32|uint64(objid))] = true
	}
	if err := rows.Err(); err != nil {
		t.Fatalf("observer: %v", err)
	}
	return out
}

// fillBehind takes advisory locks on a session of its own until the table
// is full, then gives room of them back: the table then has room for
// about room more locks.
func (f *tableFull) fillBehind(t *testing.T, room int) {
	t.Helper()
	ctx, cancel := guardCtx()
	defer cancel()
	c, err := pgx.Connect(ctx, f.cl.DSN)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close(context.Background()) })
	const base = 1 << 40 // ids no Kannuki key of the test derives
	n := 0
	for ; ; n++ {
		if _, err := c.Exec(ctx, "SELECT pg_try_advisory_lock($1::bigint)", int64(base+n)); err != nil {
			if serverCode(err) != pgsql.CodeLockTableFull {
				t.Fatalf("filling the lock table: %v", err)
			}
			break
		}
	}
	for i := range room {
		if _, err := c.Exec(ctx, "SELECT pg_advisory_unlock($1::bigint)", int64(base+n-1-i)); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("the table was full with %d locks of another session; %d given back", n, room)
}

// TestLockTableFull fills the server's shared lock table through a Locker
// until the first refusal (SQLSTATE 53200): every lock granted before it
// is still held, as another session sees in pg_locks; the refusal matches
// store.ErrCapacity and names max_locks_per_transaction; no Handle
// reports a loss; and once a few locks are released, acquisition works
// again. With multiplexing the Locker fills the table itself, on shared
// connections that hold hundreds of its other locks; without, each lock
// pins a connection, so another session fills the table first.
func TestLockTableFull(t *testing.T) {
	for _, mode := range modes {
		t.Run(mode.name, func(t *testing.T) {
			f := newTableFull(t, 8)
			if mode.opts.SharedConns < 0 {
				f.fillBehind(t, 3)
			}
			be := New(f.pool, mode.opts)
			l := kannuki.New(be, kannuki.Options{KeyPrefix: "kannukipgxv5-test-" + randHex()})
			ctx, cancel := guardCtx()
			defer cancel()
			var handles []*kannuki.Handle
			defer func() {
				for _, h := range handles {
					_ = h.Release(context.Background())
				}
			}()
			var refusal error
			for i := 0; i < 5000 && refusal == nil; i++ {
				h, err := l.Acquire(ctx, fmt.Sprint("k", i))
				if err != nil {
					refusal = err
					break
				}
				handles = append(handles, h)
			}
			t.Logf("%d locks granted, then: %v", len(handles), refusal)
			if refusal == nil || len(handles) == 0 {
				t.Fatalf("%d locks granted and no refusal: the table did not fill", len(handles))
			}
			if !errors.Is(refusal, store.ErrCapacity) || !strings.Contains(refusal.Error(), "max_locks_per_transaction") {
				t.Fatalf("refusal = %v, want an error matching ErrCapacity that names max_locks_per_transaction", refusal)
			}
			var na *kannuki.NotAcquiredError
			if !errors.As(refusal, &na) || na.Reason != kannuki.ReasonCapacity {
				t.Fatalf("refusal = %#v, want a *NotAcquiredError with ReasonCapacity", refusal)
			}
			held := f.held(t)
			for i, h := range handles {
				k, _ := l.Key(fmt.Sprint("k", i))
				if !held[k.ID] {
					t.Fatalf("%s, granted before the refusal, is not held any more", h.Key())
				}
				if err := h.Err(); err != nil {
					t.Fatalf("%s reports a loss: %v", h.Key(), err)
				}
				select {
				case <-h.Lost():
					t.Fatalf("%s: Lost is closed", h.Key())
				default:
				}
			}
			// Room again: a few released, a new key is granted.
			free := min(3, len(handles))
			for _, h := range handles[len(handles)-free:] {
				if err := h.Release(ctx); err != nil {
					t.Fatalf("Release %s: %v", h.Key(), err)
				}
			}
			handles = handles[:len(handles)-free]
			h, err := l.Acquire(ctx, "after")
			if err != nil {
				t.Fatalf("Acquire after %d releases: %v", free, err)
			}
			handles = append(handles, h)
			for _, h := range handles {
				if err := h.Release(ctx); err != nil {
					t.Fatalf("Release %s: %v", h.Key(), err)
				}
			}
			handles = nil
			if be.mux != nil && be.mux.size() != 0 {
				t.Fatalf("%d shared connections left", be.mux.size())
			}
			poolHoldsNone(t, f.pool)
		})
	}
}
