package mysql

import (
	"context"
	"errors"
	"os"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/kannuki-go/kannuki"
)

// TestWatchLatency measures the time from a KILL of a holder's session
// (taken just before the KILL is sent, so it includes the KILL's round
// trip) to fn's context cancel, over KANNUKI_MYSQL_MEASURE kills (say
// 100) per setup: with the Dialer (keepalive 1 h: only the watch tells)
// and without it (keepalive 100 ms). It only logs; it is skipped unless
// KANNUKI_MYSQL_MEASURE is set.
func TestWatchLatency(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("KANNUKI_MYSQL_MEASURE"))
	if n <= 0 {
		t.Skip("set KANNUKI_MYSQL_MEASURE=100 to measure")
	}
	for _, s := range []struct {
		name      string
		setup     watchSetup
		keepalive time.Duration
	}{
		{"dialer", watchSetups[0], time.Hour},
		{"nodialer", watchSetups[2], 100 * time.Millisecond},
	} {
		t.Run(s.name, func(t *testing.T) {
			b := newWatchBackend(t, variants[0], s.setup, 4)
			locker := kannuki.New(b, kannuki.Options{KeepaliveInterval: s.keepalive})
			obs := newObserver(t)
			var lat, killRTT []time.Duration
			for range n {
				k := uniqueKey(t)
				told := make(chan time.Time, 1)
				started := make(chan struct{})
				errc := make(chan error, 1)
				go func() {
					errc <- locker.WithLock(context.Background(), k.String, func(fctx context.Context) error {
						close(started)
						<-fctx.Done()
						told <- time.Now()
						return context.Cause(fctx)
					})
				}()
				<-started
				id := obs.owner(t, k)
				t0 := time.Now()
				obs.kill(t, id)
				killRTT = append(killRTT, time.Since(t0))
				select {
				case t1 := <-told:
					lat = append(lat, t1.Sub(t0))
				case <-time.After(20 * time.Second):
					t.Fatal("not told within 20 s")
				}
				if err := <-errc; !errors.Is(err, kannuki.ErrLockLost) {
					t.Fatalf("WithLock: %v", err)
				}
			}
			t.Logf("%s, %d kills: KILL to fn's cancel %s; the KILL's own round trip %s", s.name, n, summary(lat), summary(killRTT))
		})
	}
}

// summary is min / median / p99 / max.
func summary(d []time.Duration) string {
	slices.Sort(d)
	q := func(p float64) time.Duration { return d[min(len(d)-1, int(p*float64(len(d))))] }
	return "min " + d[0].String() + " / median " + q(0.5).String() + " / p99 " + q(0.99).String() + " / max " + d[len(d)-1].String()
}
