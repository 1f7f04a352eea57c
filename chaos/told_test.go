package chaos

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"os"
	"os/exec"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/kannuki-go/kannuki/store"

	"github.com/jackc/pgx/v5"
	"github.com/kannuki-go/kannuki"
)

// The "told at once" cases: a session killed on the server must reach its
// holder at the speed of the socket (the backends' socket watch), not of
// the keepalive. Two measurements per backend, each with the watch on and
// off (NoWatch) in the same run:
//
//   - TestToldLatency: holders that hold until told; a killer terminates
//     one holder's session at a time and times the kill to the holder's
//     context cancel.
//   - TestToldOverlap: the workload of issue #23 (4 Lockers, each its own
//     pool, x 6 goroutines on 2 keys, holds of 0-3 ms, KeepaliveInterval
//     100 ms, a session kill every 50 ms): every time a holder enters fn
//     while another holder of the key is inside, the overlap is classified
//     by whether the older holder had been told (its context canceled)
//     when the newer one entered.

// toldKinds are the backends with a socket watch.
var toldKinds = []string{kindPgxv5, kindPgPgx, kindMySQL}

// toldPlan sizes the cases.
func toldKills() int {
	if long() {
		return 400
	}
	return 60
}

func toldOverlapFor() time.Duration {
	if long() {
		return 20 * time.Second
	}
	return 3 * time.Second
}

// killer ends the sessions holding keys, on PostgreSQL or MariaDB.
type killer struct {
	pg *pgx.Conn
	my *sql.DB
}

func newKiller(t *testing.T, kind string) *killer {
	if kind == kindMySQL {
		return &killer{my: mysqlAdmin(t)}
	}
	return &killer{pg: pgAdmin(t)}
}

// holders returns the sessions holding any of keys.
func (k *killer) holders(ctx context.Context, keys []string) ([]int64, error) {
	if k.my != nil {
		return mysqlHolders(ctx, k.my, keys)
	}
	pids, err := pgLockPIDs(ctx, k.pg, keys, true)
	out := make([]int64, len(pids))
	for i, p := range pids {
		out[i] = int64(p)
	}
	return out, err
}

// kill ends session id; false when it was gone.
func (k *killer) kill(ctx context.Context, id int64) bool {
	if k.my != nil {
		_, err := k.my.ExecContext(ctx, "KILL "+strconv.FormatInt(id, 10))
		return err == nil
	}
	var ok bool
	err := k.pg.QueryRow(ctx, "SELECT pg_terminate_backend($1)", id).Scan(&ok)
	return err == nil && ok
}

// burn keeps n cores busy (KANNUKI_CHAOS_BURNERS overrides n) with processes of their own (shell loops) until
// the returned stop is called: the measurements are taken on a loaded
// machine, as the kernel schedules it, without starving this process's
// own network poller as busy goroutines would.
func burn(t *testing.T, n int) (stop func()) {
	if v, err := strconv.Atoi(os.Getenv("KANNUKI_CHAOS_BURNERS")); err == nil {
		n = v // 0 measures an idle machine
	}
	var cmds []*exec.Cmd
	for range n {
		c := exec.Command("sh", "-c", "while :; do :; done")
		c.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		if err := c.Start(); err != nil {
			t.Fatalf("start a CPU burner: %v", err)
		}
		cmds = append(cmds, c)
	}
	return func() {
		for _, c := range cmds {
			_ = c.Process.Kill()
			_ = c.Wait()
		}
	}
}

// percentiles of ds in milliseconds: min, median, p99, max.
func percentiles(ds []time.Duration) map[string]float64 {
	if len(ds) == 0 {
		return nil
	}
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	p := func(q float64) time.Duration { return s[min(len(s)-1, int(q*float64(len(s))))] }
	return map[string]float64{"min": ms(s[0]), "median": ms(p(0.5)), "p99": ms(p(0.99)), "max": ms(s[len(s)-1])}
}

func TestToldLatency(t *testing.T) {
	for _, kind := range toldKinds {
		t.Run(kind, func(t *testing.T) {
			on := toldLatency(t, kind, false)
			off := toldLatency(t, kind, true)
			t.Logf("%s: kill to context cancel, watch on %v (n=%d), off %v (n=%d)", kind, percentiles(on), len(on), percentiles(off), len(off))
			fig := Figure{Backend: kind, Counts: map[string]int64{"kills_watch": int64(len(on)), "kills_nowatch": int64(len(off))}, Millis: map[string]float64{}}
			for k, v := range percentiles(on) {
				fig.Millis["watch_"+k] = v
			}
			for k, v := range percentiles(off) {
				fig.Millis["nowatch_"+k] = v
			}
			fig.Notes = []string{"session kill (pg_terminate_backend / KILL) to the holder's fn context canceled with ErrLockLost; 4 holders, 2 CPU-bound processes beside them; keepalive 1 s"}
			record(t, fig)
			if len(on) == 0 {
				t.Fatal("no kill was measured with the watch on")
			}
		})
	}
}

// toldLatency runs 4 holders on keys of their own, each holding until told,
// and kills one holder's session at a time. It returns the time from each
// kill to the holder's context cancel.
func toldLatency(t *testing.T, kind string, noWatch bool) []time.Duration {
	const holders = 4
	kills := toldKills()
	keepalive := time.Second
	if noWatch {
		kills = min(kills, 20) // each waits for a keepalive
	}
	run := randHex(4)
	kl := newKiller(t, kind)
	type holder struct {
		key    string
		inside chan struct{} // closed when a holding began
		told   chan time.Time
	}
	hs := make([]*holder, holders)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var fail atomic.Value
	for i := range hs {
		h := &holder{key: fmt.Sprintf("chaos/told/%s/k%d", run, i), inside: make(chan struct{}, 1), told: make(chan time.Time, 1)}
		hs[i] = h
		b := mustBackend(t, backendConfig{Kind: kind, MaxConns: 2, AppName: "kannuki-chaos-told-" + run, NoWatch: noWatch})
		l := kannuki.New(b, kannuki.Options{KeepaliveInterval: keepalive})
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				err := l.WithLock(context.Background(), h.key, func(ctx context.Context) error {
					h.inside <- struct{}{}
					select {
					case <-ctx.Done():
						if errors.Is(context.Cause(ctx), kannuki.ErrLockLost) {
							h.told <- time.Now()
						}
					case <-stop:
					}
					return nil
				}, kannuki.Timeout(5*time.Second))
				if err != nil && !errors.Is(err, kannuki.ErrLockLost) && !errors.Is(err, kannuki.ErrNotAcquired) {
					fail.Store(err)
				}
			}
		}()
	}
	stopAll := func() {
		close(stop)
		wg.Wait()
	}
	defer burn(t, 2)()
	ctx := context.Background()
	rng := mrand.New(mrand.NewPCG(mrand.Uint64(), 2))
	var out []time.Duration
	for len(out) < kills {
		h := hs[rng.IntN(holders)]
		select {
		case <-h.inside:
		case <-time.After(hangGuard):
			stopAll()
			t.Fatalf("holder of %s did not get its lock back within %s", h.key, hangGuard)
		}
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		ids, err := kl.holders(cctx, []string{h.key})
		if err != nil || len(ids) != 1 {
			cancel()
			stopAll()
			t.Fatalf("holder session of %s: %v %v", h.key, ids, err)
		}
		select { // a stale report must not time this kill
		case <-h.told:
		default:
		}
		t0 := time.Now()
		ok := kl.kill(cctx, ids[0])
		cancel()
		if !ok {
			continue
		}
		select {
		case t1 := <-h.told:
			out = append(out, t1.Sub(t0))
		case <-time.After(keepalive + store.DefaultReleaseTimeout + hangGuard):
			stopAll()
			t.Fatalf("the holder of %s was never told its session was killed", h.key)
		}
	}
	stopAll()
	if err, _ := fail.Load().(error); err != nil {
		t.Fatalf("a lock call failed: %v", err)
	}
	return out
}

// TestToldOverlap: under session kills, overlaps whose older holder was not
// yet told (the window the watch closes) with the watch on, against off.
func TestToldOverlap(t *testing.T) {
	for _, kind := range toldKinds {
		t.Run(kind, func(t *testing.T) {
			on := toldOverlap(t, kind, false)
			off := toldOverlap(t, kind, true)
			t.Logf("%s: watch on %+v; off %+v", kind, on, off)
			record(t, Figure{Backend: kind, Counts: map[string]int64{
				"cycles_watch": on.cycles, "kills_watch": on.kills, "overlaps_untold_watch": on.untold, "overlaps_told_watch": on.told,
				"cycles_nowatch": off.cycles, "kills_nowatch": off.kills, "overlaps_untold_nowatch": off.untold, "overlaps_told_nowatch": off.told,
			}, Notes: []string{fmt.Sprintf("4 Lockers (each its own pool) x 6 goroutines on 2 keys, holds 0-3 ms, keepalive 100 ms, a session kill every 50 ms for %s per phase", toldOverlapFor())}})
			if long() && off.untold >= 20 && on.untold*20 > off.untold {
				t.Errorf("untold overlaps with the watch %d, more than 5%% of the %d without it", on.untold, off.untold)
			}
		})
	}
}

type overlapCounts struct {
	cycles, kills, untold, told int64
}

// toldOverlap runs the workload of issue #23 for toldOverlapFor.
func toldOverlap(t *testing.T, kind string, noWatch bool) overlapCounts {
	const lockers, goroutines = 4, 6
	run := randHex(4)
	keys := []string{"chaos/toldov/" + run + "/a", "chaos/toldov/" + run + "/b"}
	kl := newKiller(t, kind)
	// inside[k] are the holders of key k inside fn now, with their contexts.
	var mu sync.Mutex
	inside := [2]map[*int]context.Context{{}, {}}
	var c overlapCounts
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range lockers {
		b := mustBackend(t, backendConfig{Kind: kind, MaxConns: goroutines + 2, AppName: "kannuki-chaos-toldov-" + run, NoWatch: noWatch})
		l := kannuki.New(b, kannuki.Options{KeepaliveInterval: 100 * time.Millisecond})
		for g := range goroutines {
			wg.Add(1)
			go func() {
				defer wg.Done()
				rng := mrand.New(mrand.NewPCG(mrand.Uint64(), uint64(g)))
				for {
					select {
					case <-stop:
						return
					default:
					}
					ki := rng.IntN(2)
					_ = l.WithLock(context.Background(), keys[ki], func(ctx context.Context) error {
						me := new(int)
						mu.Lock()
						for _, other := range inside[ki] {
							if other.Err() == nil {
								c.untold++
							} else {
								c.told++
							}
						}
						inside[ki][me] = ctx
						c.cycles++
						mu.Unlock()
						select {
						case <-time.After(time.Duration(rng.IntN(3000)) * time.Microsecond):
						case <-ctx.Done():
						}
						mu.Lock()
						delete(inside[ki], me)
						mu.Unlock()
						return nil
					}, kannuki.Timeout(time.Second))
				}
			}()
		}
	}
	defer burn(t, 2)()
	ctx := context.Background()
	end := time.Now().Add(toldOverlapFor())
	for time.Now().Before(end) {
		time.Sleep(50 * time.Millisecond)
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		ids, err := kl.holders(cctx, keys)
		if err == nil && len(ids) > 0 && kl.kill(cctx, ids[mrand.IntN(len(ids))]) {
			c.kills++
		}
		cancel()
	}
	close(stop)
	wg.Wait()
	return c
}
