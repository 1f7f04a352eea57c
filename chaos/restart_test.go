package chaos

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kannuki-go/kannuki/internal/saidonce"
	"github.com/kannuki-go/kannuki/store"

	"github.com/kannuki-go/kannuki"
)

// TestRestart restarts the database servers under load: locks held
// across the restart must be reported lost (fn's context canceled with
// ErrLockLost, the call returning it), calls in flight must end in time
// with clear errors, and new calls must succeed once the server is back.
// It disturbs every client of the servers, so it runs only in the long run
// or with KANNUKI_CHAOS_RESTART=1, and it always leaves the servers up.
func TestRestart(t *testing.T) {
	if !restarts() {
		t.Skip("restarts the database servers: set KANNUKI_CHAOS_RESTART=1 or run the long version")
	}
	t.Run("postgres", func(t *testing.T) {
		pgAdmin(t) // skip without the server
		t.Cleanup(func() { ensureUp(t, pgUp, pgStart) })
		restartCase(t, []string{kindPgxv5, kindPgPgx, kindPgPQ}, "PostgreSQL", pgRestart)
	})
	t.Run("mariadb", func(t *testing.T) {
		mysqlAdmin(t)
		t.Cleanup(func() { ensureUp(t, mariadbUp, mariadbStart) })
		restartCase(t, []string{kindMySQL}, "MariaDB", mariadbRestart)
	})
}

func pgVersion() string {
	ents, err := os.ReadDir("/etc/postgresql")
	if err != nil || len(ents) == 0 {
		return "15"
	}
	return ents[len(ents)-1].Name()
}

func command(timeout time.Duration, name string, args ...string) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %v: %s", name, strings.Join(args, " "), err, out)
	}
	return nil
}

func pgUp() bool {
	return command(5*time.Second, "pg_isready", "-h", "127.0.0.1", "-p", "5432", "-q") == nil
}
func pgStart() error {
	return command(2*time.Minute, "pg_ctlcluster", "--skip-systemctl-redirect", pgVersion(), "main", "start")
}
func pgRestart() error {
	if err := command(2*time.Minute, "pg_ctlcluster", "--skip-systemctl-redirect", pgVersion(), "main", "restart"); err != nil {
		return err
	}
	return waitFor(time.Minute, pgUp)
}

func mariadbUp() bool {
	return command(5*time.Second, "mariadb-admin", "-h127.0.0.1", "-uroot", "ping") == nil
}
func mariadbStart() error {
	return command(time.Minute, "start-stop-daemon", "--start", "--oknodo", "--background", "--exec", "/usr/sbin/mariadbd")
}
func mariadbRestart() error {
	if err := command(2*time.Minute, "mariadb-admin", "-h127.0.0.1", "-uroot", "shutdown"); err != nil {
		return err
	}
	// start-stop-daemon --oknodo does nothing while the old process is
	// still shutting down: wait until it is gone.
	running := func() bool {
		return command(5*time.Second, "start-stop-daemon", "--status", "--exec", "/usr/sbin/mariadbd") == nil
	}
	if err := waitFor(2*time.Minute, func() bool { return !running() }); err != nil {
		return fmt.Errorf("mariadbd still running after shutdown: %w", err)
	}
	if err := mariadbStart(); err != nil {
		return err
	}
	return waitFor(time.Minute, mariadbUp)
}

// waitFor polls cond until it holds or d passes.
func waitFor(d time.Duration, cond func() bool) error {
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			return fmt.Errorf("not within %s", d)
		}
		time.Sleep(100 * time.Millisecond)
	}
	return nil
}

// ensureUp starts a server that a failed case left down.
func ensureUp(t *testing.T, up func() bool, start func() error) {
	if up() {
		return
	}
	if err := start(); err != nil {
		t.Errorf("starting the server again: %v", err)
	}
	if err := waitFor(time.Minute, up); err != nil {
		t.Errorf("the server is not back up: %v", err)
	}
}

// restartResult collects what one backend saw during a restart.
type restartResult struct {
	mu       sync.Mutex
	errs     map[string]int64
	samples  map[string]string
	longest  time.Duration
	unclear  []string
	overdue  []string
	signals  []time.Duration // holders: loss signalled, after the restart began
	recovery time.Duration
}

func (r *restartResult) note(kind string, err error, d, bound time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.errs[kind]++
	if err != nil {
		if _, ok := r.samples[kind]; !ok {
			r.samples[kind] = err.Error()
		}
		if saidonce.Problem(err.Error()) != "" {
			r.unclear = append(r.unclear, err.Error())
		}
	}
	r.longest = max(r.longest, d)
	if d > bound+hangGuard {
		r.overdue = append(r.overdue, fmt.Sprintf("%s call took %s (bound %s)", kind, d, bound))
	}
}

func restartCase(t *testing.T, kinds []string, server string, restart func() error) {
	results := map[string]*restartResult{}
	var began time.Time
	var beganMu sync.Mutex
	since := func() time.Duration {
		beganMu.Lock()
		defer beganMu.Unlock()
		if began.IsZero() {
			return 0
		}
		return time.Since(began)
	}
	var wg sync.WaitGroup
	stopLoad := make(chan struct{})
	held := make(chan struct{}, 16)
	const holders = 2
	for _, kind := range kinds {
		r := &restartResult{errs: map[string]int64{}, samples: map[string]string{}}
		results[kind] = r
		b := mustBackend(t, backendConfig{Kind: kind, MaxConns: 10, AppName: "kannuki-chaos-restart"})
		l := kannuki.New(b, kannuki.Options{KeepaliveInterval: 200 * time.Millisecond})
		run := randHex(4)
		// Holders: keep their lock until told it is lost.
		for i := range holders {
			wg.Add(1)
			go func() {
				defer wg.Done()
				key := fmt.Sprintf("chaos/restart/%s/held%d", run, i)
				start := time.Now()
				var cause error
				err := l.WithLock(context.Background(), key, func(ctx context.Context) error {
					held <- struct{}{}
					select {
					case <-ctx.Done():
						cause = context.Cause(ctx)
						r.mu.Lock()
						r.signals = append(r.signals, since())
						r.mu.Unlock()
						return ctx.Err()
					case <-time.After(3 * time.Minute):
						return errors.New("the lock was never reported lost")
					}
				})
				switch {
				case !errors.Is(err, kannuki.ErrLockLost):
					t.Errorf("%s: holder across the restart: %v; want ErrLockLost", kind, err)
				case !errors.Is(cause, kannuki.ErrLockLost):
					t.Errorf("%s: holder's context cause %v; want ErrLockLost", kind, cause)
				}
				r.note("holder-lost", err, time.Since(start), 3*time.Minute)
			}()
		}
		// A waiter queued behind holder 0, and a load of short cycles.
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-time.After(300 * time.Millisecond)
			wait := 20 * time.Second
			start := time.Now()
			err := l.WithLock(context.Background(), fmt.Sprintf("chaos/restart/%s/held0", run), func(context.Context) error { return nil }, kannuki.Timeout(wait))
			kindOf := "waiter-granted"
			if err != nil {
				kindOf = "waiter-" + errKind(err)
			}
			r.note(kindOf, err, time.Since(start), wait+store.DefaultReleaseTimeout)
		}()
		for g := range 3 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for n := 0; ; n++ {
					select {
					case <-stopLoad:
						return
					default:
					}
					key := fmt.Sprintf("chaos/restart/%s/load%d", run, n%2)
					ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
					start := time.Now()
					err := l.WithLock(ctx, key, func(context.Context) error { time.Sleep(time.Millisecond); return nil }, kannuki.Timeout(100*time.Millisecond))
					cancel()
					r.note("load-"+errKind(err), err, time.Since(start), 2*time.Second+store.DefaultReleaseTimeout)
					if err != nil {
						time.Sleep(20 * time.Millisecond)
					}
					_ = g
				}
			}()
		}
	}
	for range len(kinds) * holders {
		select {
		case <-held:
		case <-time.After(hangGuard):
			t.Fatal("the holders did not get their locks")
		}
	}
	time.Sleep(500 * time.Millisecond) // the waiter queues, the load runs
	beganMu.Lock()
	began = time.Now()
	beganMu.Unlock()
	if err := restart(); err != nil {
		close(stopLoad)
		wg.Wait()
		t.Fatalf("restart %s: %v", server, err)
	}
	restarted := time.Since(began)
	// Recovery: a fresh pool's first lock succeeds (the load goroutines
	// show that the old pools recover too).
	var rwg sync.WaitGroup
	for kind, r := range results {
		rwg.Add(1)
		go func() {
			defer rwg.Done()
			b, closeFn, err := openBackend(context.Background(), backendConfig{Kind: kind, MaxConns: 2, Lazy: true})
			if err != nil {
				t.Errorf("%s: %v", kind, err)
				return
			}
			defer closeFn()
			l := kannuki.New(b, kannuki.Options{})
			for {
				ok, err := l.TryLock(context.Background(), "chaos/restart/probe-"+randHex(4), func(context.Context) error { return nil })
				if ok && err == nil {
					r.recovery = since()
					return
				}
				if since() > 2*time.Minute {
					t.Errorf("%s: no successful lock 2 minutes after the restart began: %v", kind, err)
					return
				}
				time.Sleep(50 * time.Millisecond)
			}
		}()
	}
	rwg.Wait()
	time.Sleep(time.Second) // the load runs on the restarted server a little
	close(stopLoad)
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(time.Minute):
		t.Fatal("calls still running a minute after the restart: something hangs")
	}
	for kind, r := range results {
		for _, u := range r.unclear {
			t.Errorf("%s: unclear error: %s", kind, u)
		}
		for _, o := range r.overdue {
			t.Errorf("%s: %s", kind, o)
		}
		if r.errs["load-ok"] == 0 {
			t.Errorf("%s: no load cycle succeeded", kind)
		}
		var last time.Duration
		for _, s := range r.signals {
			last = max(last, s)
		}
		t.Logf("%s: %s restarted in %s; recovered after %s; holders told after %v; calls %v", kind, server, restarted.Round(time.Millisecond), r.recovery.Round(time.Millisecond), r.signals, r.errs)
		record(t, Figure{Backend: kind, Errors: r.errs, Samples: r.samples,
			Counts: map[string]int64{"restarts": 1, "holders_lost_signalled": int64(len(r.signals))},
			Millis: map[string]float64{
				"restart_command": float64(restarted.Milliseconds()), "time_to_recover": float64(r.recovery.Milliseconds()),
				"last_holder_told_after": float64(last.Milliseconds()), "longest_call": float64(r.longest.Milliseconds()),
			}})
	}
}

// errKind names an error for the figures.
func errKind(err error) string {
	var na *kannuki.NotAcquiredError
	switch {
	case err == nil:
		return "ok"
	case errors.Is(err, kannuki.ErrLockLost):
		return "lost"
	case errors.As(err, &na):
		return "not-acquired-" + na.Reason.String()
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return "context"
	}
	return "error"
}
