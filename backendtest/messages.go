package backendtest

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/kannuki-go/kannuki"
)

// testMessages walks the Locker's error paths on this backend: each
// returns an error that matches its sentinel and says each thing once
// ("kannuki:" once at the start, no part or key repeated), whatever the
// backend adds as the cause.
func (s *suite) testMessages(t *testing.T) {
	l := s.newLocker(t, nil, "", -1)
	b := s.newLocker(t, nil, "", -1) // another client on the same keys
	ctx, cancel := guardCtx()
	defer cancel()
	fn := func(context.Context) error { return nil }

	holder, err := l.Acquire(ctx, "msg")
	if err != nil {
		t.Fatalf("Acquire: %v", err)
	}
	defer holder.Release(context.Background())
	other := kannuki.New(s.h.New(t), kannuki.Options{KeyPrefix: keyPrefixOf(t, l)})

	canceled, cancelNow := context.WithCancel(ctx)
	cancelNow()
	waitCtx, stopWait := context.WithTimeout(ctx, 50*time.Millisecond)
	defer stopWait()

	cases := []struct {
		what string
		want error
		call func() error
	}{
		{"a try of a held key", kannuki.ErrNotAcquired, func() error {
			return other.WithLock(ctx, "msg", fn, kannuki.Timeout(0))
		}},
		{"a timed wait that runs out", kannuki.ErrNotAcquired, func() error {
			return other.WithLock(ctx, "msg", fn, kannuki.Timeout(50*time.Millisecond))
		}},
		{"a wait its context's deadline ends", context.DeadlineExceeded, func() error {
			return other.WithLock(waitCtx, "msg", fn)
		}},
		{"a call on a canceled context", context.Canceled, func() error {
			return other.WithLock(canceled, "msg", fn)
		}},
		{"retries that run out", kannuki.ErrNotAcquired, func() error {
			return other.WithLock(ctx, "msg", fn, kannuki.WithStrategy(kannuki.Retry{Attempts: 2, Interval: time.Millisecond}))
		}},
		{"an empty key", kannuki.ErrInvalidKey, func() error { return b.WithLock(ctx, "", fn) }},
		{"a nil function", kannuki.ErrInvalidArgument, func() error { return b.WithLock(ctx, "msg-free", nil) }},
		{"a negative timeout", kannuki.ErrInvalidArgument, func() error {
			return b.WithLock(ctx, "msg-free", fn, kannuki.Timeout(-time.Second))
		}},
		{"a bad Retry", kannuki.ErrInvalidArgument, func() error {
			return b.WithLock(ctx, "msg-free", fn, kannuki.WithStrategy(kannuki.Retry{Jitter: 2}))
		}},
		{"Held on a canceled context", context.Canceled, func() error {
			_, err := b.Held(canceled, "msg")
			return err
		}},
		{"MaxHeld reached", kannuki.ErrCapacity, func() error {
			capped := kannuki.New(s.h.New(t), kannuki.Options{KeyPrefix: keyPrefixOf(t, l), MaxHeld: 1})
			return capped.WithLock(ctx, "msg-a", func(ctx context.Context) error {
				return capped.WithLock(ctx, "msg-b", fn)
			})
		}},
	}
	if !s.h.Shared {
		cases = append(cases, struct {
			what string
			want error
			call func() error
		}{"a shared lock the store lacks", kannuki.ErrUnsupported, func() error {
			return b.WithLock(ctx, "msg-free", fn, kannuki.Shared())
		}})
	}
	for _, c := range cases {
		err := c.call()
		switch {
		case err == nil:
			t.Errorf("%s: no error", c.what)
		case !errors.Is(err, c.want):
			t.Errorf("%s: %v does not match %v", c.what, err, c.want)
		default:
			checkPrefix(t, c.what, err)
		}
	}
}

// keyPrefixOf returns the key prefix l joins to keys.
func keyPrefixOf(t testing.TB, l *kannuki.Locker) string {
	t.Helper()
	k := lockerKey(t, l, "x")
	return k.String[:len(k.String)-len("/x")]
}
