package chaos

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/kannuki-go/kannuki"
)

// Idle killers end sessions that say nothing for a while: PostgreSQL's
// idle_session_timeout and MariaDB's wait_timeout. A lock's connection is
// idle between keepalives, so the keepalive must either keep it alive
// (interval below the timeout) or report the loss (interval above it, or
// no keepalive at all: then the release finds it).
const (
	pgIdleTimeout    = 1500 * time.Millisecond // idle_session_timeout
	mysqlIdleTimeout = 2 * time.Second         // wait_timeout (whole seconds)
)

// idleConfig is kind's backend with the idle killer armed on every session.
func idleConfig(kind string) (backendConfig, time.Duration) {
	cfg := backendConfig{Kind: kind, MaxConns: 4, AppName: "kannuki-chaos-idle"}
	if kind == kindMySQL {
		cfg.MySQLVars = map[string]string{"wait_timeout": fmt.Sprint(int(mysqlIdleTimeout / time.Second))}
		return cfg, mysqlIdleTimeout
	}
	cfg.PGOptions = fmt.Sprintf("-c idle_session_timeout=%d", pgIdleTimeout.Milliseconds())
	return cfg, pgIdleTimeout
}

func TestIdleKillers(t *testing.T) {
	for _, kind := range dbKinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			cfg, idle := idleConfig(kind)
			// The idle killer must really be armed, or the cases prove nothing.
			t.Run("KeepaliveKeepsTheLock", func(t *testing.T) {
				t.Parallel()
				b := mustBackend(t, cfg)
				l := kannuki.New(b, kannuki.Options{KeepaliveInterval: idle / 6})
				key := "chaos/idle/keep/" + randHex(4)
				hold := 2*idle + 500*time.Millisecond
				start := time.Now()
				err := l.WithLock(context.Background(), key, func(ctx context.Context) error {
					select {
					case <-time.After(hold):
						return nil
					case <-ctx.Done():
						return fmt.Errorf("fn's context ended after %s: %w", time.Since(start).Round(time.Millisecond), context.Cause(ctx))
					}
				})
				if err != nil {
					t.Fatalf("keepalive every %s, idle killer at %s, held %s: %v", idle/6, idle, hold, err)
				}
				record(t, Figure{Backend: kind, Counts: map[string]int64{"locks_kept": 1},
					Millis: map[string]float64{"held": float64(hold.Milliseconds()), "keepalive": float64((idle / 6).Milliseconds()), "idle_timeout": float64(idle.Milliseconds())}})
			})
			t.Run("LossReported", func(t *testing.T) {
				t.Parallel()
				b := mustBackend(t, cfg)
				every := 2 * idle
				l := kannuki.New(b, kannuki.Options{KeepaliveInterval: every})
				key := "chaos/idle/lost/" + randHex(4)
				start := time.Now()
				var signalled time.Duration
				var cause error
				err := l.WithLock(context.Background(), key, func(ctx context.Context) error {
					select {
					case <-time.After(every + idle + hangGuard):
						return errors.New("the loss was never signalled to fn")
					case <-ctx.Done():
						signalled, cause = time.Since(start), context.Cause(ctx)
						return ctx.Err()
					}
				})
				if !errors.Is(cause, kannuki.ErrLockLost) {
					t.Errorf("fn's context cause = %v, want ErrLockLost", cause)
				}
				if !errors.Is(err, kannuki.ErrLockLost) {
					t.Fatalf("WithLock = %v, want ErrLockLost", err)
				}
				if signalled < idle {
					t.Errorf("loss signalled after %s, before the idle killer (%s) could have struck", signalled, idle)
				}
				t.Logf("%s: loss signalled to fn after %s (idle killer %s, keepalive %s): %v", kind, signalled.Round(time.Millisecond), idle, every, err)
				record(t, Figure{Backend: kind, Counts: map[string]int64{"losses_signalled": 1},
					Millis:  map[string]float64{"signalled_after": float64(signalled.Milliseconds()), "keepalive": float64(every.Milliseconds()), "idle_timeout": float64(idle.Milliseconds())},
					Samples: map[string]string{"lost": err.Error()}})
			})
			t.Run("NoKeepaliveReleaseReports", func(t *testing.T) {
				t.Parallel()
				b := mustBackend(t, cfg)
				l := kannuki.New(b, kannuki.Options{KeepaliveInterval: -1})
				key := "chaos/idle/nokeepalive/" + randHex(4)
				h, err := l.Acquire(context.Background(), key)
				if err != nil {
					t.Fatal(err)
				}
				// Wait until the server has ended the session: then the
				// lock is free for anyone, and only Release can tell.
				other := kannuki.New(mustBackend(t, backendConfig{Kind: kind, MaxConns: 2}), kannuki.Options{})
				deadline := time.Now().Add(idle + hangGuard)
				for {
					held, err := other.Held(context.Background(), key)
					if err != nil {
						t.Fatal(err)
					}
					if !held {
						break
					}
					if time.Now().After(deadline) {
						t.Fatalf("the idle killer did not end the holder's session within %s", idle+hangGuard)
					}
					time.Sleep(100 * time.Millisecond)
				}
				err = h.Release(context.Background())
				if !errors.Is(err, kannuki.ErrLockLost) {
					t.Fatalf("Release after the idle killer ended the session = %v, want ErrLockLost", err)
				}
				select {
				case <-h.Lost():
				default:
					t.Error("Lost() not closed after Release reported the loss")
				}
				record(t, Figure{Backend: kind, Counts: map[string]int64{"losses_found_by_release": 1}, Samples: map[string]string{"lost": err.Error()}})
			})
		})
	}
}
