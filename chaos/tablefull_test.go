package chaos

import (
	"context"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/kannuki-go/kannuki"
	"github.com/kannuki-go/kannuki/internal/pgcluster"
)

// TestLockTableFull keeps the shared lock table of a throwaway PostgreSQL
// cluster (max_locks_per_transaction=10) at the brim while every
// PostgreSQL backend churns locks on one key set: a filler session takes
// advisory locks until the server refuses one (53200), gives a few back,
// and takes them again, over and over. Before the churn, the multiplexed
// pgx Locker takes long-held locks that share its connections with the
// churn's tries. Nothing Kannuki granted may be lost for the full table:
// no Handle lost, no overlap, every long-held lock still held as another
// session sees it, and every refusal for the table an ErrCapacity.
func TestLockTableFull(t *testing.T) {
	c := pgcluster.Start(t, "max_locks_per_transaction=10", "max_connections=60",
		"max_worker_processes=0", "max_wal_senders=0", "autovacuum=off")
	run := randHex(4)
	churnFor := 3 * time.Second
	if long() {
		churnFor = 30 * time.Second
	}
	type locker struct {
		name string
		l    *kannuki.Locker
	}
	var ls []locker
	for _, k := range []struct {
		kind      string
		dedicated bool
		name      string
	}{{kindPgxv5, false, "pgxv5"}, {kindPgxv5, true, "pgxv5 (dedicated)"}, {kindPgPgx, false, kindPgPgx}, {kindPgPQ, false, kindPgPQ}} {
		b := mustBackend(t, backendConfig{Kind: k.kind, DSN: c.DSN, MaxConns: 8, Dedicated: k.dedicated, AppName: "kannuki-chaos-full"})
		ls = append(ls, locker{k.name, kannuki.New(b, kannuki.Options{KeyPrefix: run, KeepaliveInterval: 50 * time.Millisecond})})
	}
	ctx, cancel := context.WithTimeout(context.Background(), churnFor+2*time.Minute)
	defer cancel()

	// Long-held locks on the multiplexed Locker, granted before the table fills.
	const longHeld = 100
	var long []*kannuki.Handle
	for i := range longHeld {
		h, err := ls[0].l.Acquire(ctx, fmt.Sprint("long/", i), kannuki.Timeout(0))
		if err != nil {
			t.Fatal(err)
		}
		long = append(long, h)
	}

	filler, err := pgx.Connect(ctx, c.DSN)
	if err != nil {
		t.Fatal(err)
	}
	defer filler.Close(context.Background())
	stop := make(chan struct{})
	var fills, fillerHeld atomic.Int64
	fillerDone := make(chan error, 1)
	go func() { fillerDone <- fill(ctx, filler, stop, &fills, &fillerHeld) }()
	// The churn starts on a full table.
	for fills.Load() == 0 {
		select {
		case err := <-fillerDone:
			t.Fatalf("filler: %v", err)
		case <-time.After(10 * time.Millisecond):
		}
	}

	const keys = 12
	var inside [keys]atomic.Int32
	var cycles, capacity, notAcquired, lost, overlaps atomic.Int64
	var otherMu sync.Mutex
	other := map[string]int64{}
	var wg sync.WaitGroup
	end := time.Now().Add(churnFor)
	for _, lk := range ls {
		for g := range 6 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				rng := mrand.New(mrand.NewPCG(mrand.Uint64(), uint64(g)))
				for time.Now().Before(end) {
					ki := rng.IntN(keys)
					err := lk.l.WithLock(ctx, fmt.Sprint("churn/", ki), func(ctx context.Context) error {
						if inside[ki].Add(1) != 1 {
							overlaps.Add(1)
						}
						time.Sleep(time.Duration(rng.IntN(2000)) * time.Microsecond)
						inside[ki].Add(-1)
						return nil
					}, kannuki.Timeout(time.Duration(rng.IntN(3))*25*time.Millisecond))
					cycles.Add(1)
					switch {
					case err == nil:
					case errors.Is(err, kannuki.ErrLockLost):
						lost.Add(1)
					case errors.Is(err, kannuki.ErrCapacity):
						capacity.Add(1)
						if !strings.Contains(err.Error(), "max_locks_per_transaction") {
							t.Errorf("%s: a capacity error that names no setting: %v", lk.name, err)
						}
					case errors.Is(err, kannuki.ErrNotAcquired):
						notAcquired.Add(1)
					default:
						otherMu.Lock()
						other[lk.name+": "+err.Error()]++
						otherMu.Unlock()
					}
				}
			}()
		}
	}
	wg.Wait()
	close(stop)
	if err := <-fillerDone; err != nil {
		t.Fatalf("filler: %v", err)
	}
	// Room for the observer's own catalog locks.
	if _, err := filler.Exec(ctx, "SELECT pg_advisory_unlock_all()"); err != nil {
		t.Fatal(err)
	}

	longLost := 0
	for _, h := range long {
		if h.Err() != nil {
			longLost++
			t.Errorf("long-held %s lost: %v", h.Key(), h.Err())
		}
	}
	missing, err := notHeld(ctx, c.DSN, run, longHeld)
	if err != nil {
		t.Fatal(err)
	}
	if missing > 0 {
		t.Errorf("%d long-held locks not held on the server", missing)
	}
	for _, h := range long {
		if err := h.Release(ctx); err != nil {
			t.Errorf("release %s: %v", h.Key(), err)
		}
	}
	var lockerLost int64
	for _, lk := range ls {
		lockerLost += lk.l.Stats().Lost
	}
	for msg, n := range other {
		t.Errorf("%d unexpected errors: %s", n, msg)
	}
	if lost.Load() > 0 || lockerLost > 0 {
		t.Errorf("%d calls returned ErrLockLost, the Lockers counted %d losses", lost.Load(), lockerLost)
	}
	if overlaps.Load() > 0 {
		t.Errorf("%d overlaps", overlaps.Load())
	}
	if capacity.Load() == 0 {
		t.Errorf("no call was refused for the full table in %d cycles: the case proves nothing", cycles.Load())
	}
	t.Logf("%d cycles, %d refused for capacity, %d not acquired, %d lost, %d overlaps; the filler filled the table %d times (up to %d locks)",
		cycles.Load(), capacity.Load(), notAcquired.Load(), lost.Load(), overlaps.Load(), fills.Load(), fillerHeld.Load())
	record(t, Figure{Backend: "pgxv5, pgxv5 (dedicated), pg/pgx-stdlib, pg/lib-pq on one key set", Counts: map[string]int64{
		"cycles": cycles.Load(), "refused_capacity": capacity.Load(), "not_acquired": notAcquired.Load(),
		"lost": lost.Load() + lockerLost, "overlaps": overlaps.Load(), "long_held": longHeld, "long_held_lost": int64(longLost + missing),
		"table_fills": fills.Load(), "filler_locks": fillerHeld.Load(),
	}, Notes: []string{fmt.Sprintf("throwaway cluster, max_locks_per_transaction=10, max_connections=60; 4 Lockers x 6 goroutines on 12 keys for %s while a filler keeps the lock table full", churnFor)}})
}

// fill keeps the lock table full until stop: it takes pair-form advisory
// locks (a key space Kannuki's bigint keys never share) until the server
// refuses one, gives 8 back, and starts again.
func fill(ctx context.Context, c *pgx.Conn, stop chan struct{}, fills, most *atomic.Int64) error {
	var held []int
	next := 0
	for {
		select {
		case <-stop:
			return nil
		default:
		}
		for {
			_, err := c.Exec(ctx, "SELECT pg_advisory_lock(7, $1)", next)
			if err != nil {
				if !strings.Contains(err.Error(), "53200") {
					return err
				}
				break
			}
			held = append(held, next)
			next++
		}
		fills.Add(1)
		most.Store(max(most.Load(), int64(len(held))))
		time.Sleep(20 * time.Millisecond)
		for range min(8, len(held)) {
			i := mrand.IntN(len(held))
			if _, err := c.Exec(ctx, "SELECT pg_advisory_unlock(7, $1)", held[i]); err != nil {
				return err
			}
			held[i] = held[len(held)-1]
			held = held[:len(held)-1]
		}
	}
}

// notHeld counts the long-held keys (prefix/long/0..n-1) that no session
// holds, as a session of its own sees pg_locks.
func notHeld(ctx context.Context, dsn, prefix string, n int) (int, error) {
	c, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return 0, err
	}
	defer c.Close(context.Background())
	keys := make([]string, n)
	for i := range keys {
		keys[i] = fmt.Sprintf("%s/long/%d", prefix, i)
	}
	pids, err := pgLockPIDs(ctx, c, keys, true)
	if err != nil {
		return 0, err
	}
	return n - len(pids), nil
}
