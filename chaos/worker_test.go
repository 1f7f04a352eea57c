package chaos

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync/atomic"
	"time"

	"github.com/kannuki-go/kannuki/internal/saidonce"
	"github.com/kannuki-go/kannuki/store"

	"github.com/kannuki-go/kannuki"
)

// event is one line of a process's event log.
type event struct {
	T    string  `json:"t"`           // "saw", "replaced" or "out"
	ID   string  `json:"id"`          // the holding (or attempt): "proc.goroutine.seq"
	Key  int     `json:"k"`           // index of the key
	Prev string  `json:"p,omitempty"` // saw: the marker enter replaced; replaced: the marker leave found
	Out  string  `json:"o,omitempty"` // out: the outcome (see classify)
	InFn bool    `json:"f,omitempty"` // out "lost": fn's context ended with cause ErrLockLost
	Err  string  `json:"e,omitempty"` // out: the error, for the kinds worth a sample
	Ms   float64 `json:"ms,omitempty"`
	Hang bool    `json:"h,omitempty"` // out: the call outlived its bound by hangGuard
	// Dead is set on a "saw" event when fn's context had already ended as
	// fn started: the lock was handed out to a call that was canceled.
	Dead bool `json:"d,omitempty"`
}

// Outcomes of one lock cycle.
const (
	outOK        = "ok"            // fn ran, the call returned nil
	outLost      = "lost"          // fn ran, the call returned an error matching ErrLockLost
	outFnCtx     = "fn-ctx-ended"  // fn ran and returned because its context ended (cancel/deadline)
	outRelease   = "release-error" // fn ran, the release failed (the lock is not reported lost)
	outEntered   = "fn-ran-error"  // fn ran, another error
	outCtx       = "ctx-ended"     // not acquired: the context ended first (not a NotAcquiredError)
	outAcquire   = "acquire-error" // not acquired: the backend failed (session killed, ...)
	outUnclear   = "unclear-error" // an error that does not start with "kannuki:": a failure
	outNotPrefix = "na-"           // + Reason: a *NotAcquiredError, or a TryLock that found the key held
)

// worker runs lock cycles on one goroutine.
type worker struct {
	proc, g int
	seq     int
	l       *kannuki.Locker
	keys    []string
	led     *ledger
	ev      *eventLog
	rng     *rand.Rand
	holdMax time.Duration
	harness atomic.Pointer[error] // first harness failure (ledger, log)
}

// callBound is the longest context of a cycle; a call must end within it
// plus the release timeout plus hangGuard.
const callBound = 3 * time.Second

func (w *worker) fail(err error) {
	w.harness.CompareAndSwap(nil, &err)
}

func (w *worker) log(e event) {
	line, err := json.Marshal(e)
	if err == nil {
		err = w.ev.write(line)
	}
	if err != nil {
		w.fail(err)
	}
}

// cycle runs one lock cycle with a random style: a timed wait, a try, a
// wait canceled at a random moment (while waiting or while holding), or a
// wait bounded only by the context's deadline.
func (w *worker) cycle() {
	w.seq++
	id := fmt.Sprintf("%d.%d.%d", w.proc, w.g, w.seq)
	ki := w.rng.IntN(len(w.keys))
	key := w.keys[ki]
	hold := time.Duration(w.rng.IntN(1000)) * time.Microsecond
	if w.rng.IntN(10) == 0 {
		hold = time.Duration(w.rng.Int64N(int64(w.holdMax)))
	}
	ctx, cancel := context.WithTimeout(context.Background(), callBound)
	defer cancel()
	var opts []kannuki.CallOption
	try := false
	switch style := w.rng.IntN(100); {
	case style < 45:
		opts = append(opts, kannuki.Timeout(time.Duration(1+w.rng.IntN(80))*time.Millisecond))
	case style < 60:
		try = true
	case style < 80:
		t := time.AfterFunc(time.Duration(w.rng.IntN(60))*time.Millisecond, cancel)
		defer t.Stop()
	default:
		var c2 context.CancelFunc
		ctx, c2 = context.WithTimeout(ctx, time.Duration(50+w.rng.IntN(450))*time.Millisecond)
		defer c2()
		opts = append(opts, kannuki.NoTimeout())
	}
	entered, inFn := false, false
	fn := func(fctx context.Context) error {
		entered = true
		dead := fctx.Err() != nil
		prev, err := w.led.enter(fmt.Sprint("k", ki), id)
		if err != nil {
			w.fail(err)
		}
		if prev != "" {
			w.log(event{T: "saw", ID: id, Key: ki, Prev: prev, Dead: dead})
		}
		t := time.NewTimer(hold)
		select {
		case <-t.C:
		case <-fctx.Done():
		}
		t.Stop()
		var ret error
		if fctx.Err() != nil {
			ret = context.Cause(fctx)
			inFn = errors.Is(ret, kannuki.ErrLockLost)
		}
		cur, err := w.led.leave(fmt.Sprint("k", ki), id)
		if err != nil {
			w.fail(err)
		}
		if cur != "" {
			w.log(event{T: "replaced", ID: id, Key: ki, Prev: cur})
		}
		return ret
	}
	start := time.Now()
	var err error
	ran := true
	if try {
		ran, err = w.l.TryLock(ctx, key, fn)
	} else {
		err = w.l.WithLock(ctx, key, fn, opts...)
	}
	d := time.Since(start)
	out, sample := classify(entered, ran, try, err)
	e := event{T: "out", ID: id, Key: ki, Out: out, InFn: inFn && out == outLost, Ms: float64(d.Microseconds()) / 1000}
	if sample {
		e.Err = err.Error()
	}
	if d > callBound+store.DefaultReleaseTimeout+hangGuard {
		e.Hang = true
	}
	w.log(e)
}

// classify names a cycle's outcome, and says whether its error is worth
// keeping as a sample.
func classify(entered, ran, try bool, err error) (string, bool) {
	if entered {
		switch {
		case err == nil:
			return outOK, false
		case errors.Is(err, kannuki.ErrLockLost):
			return outLost, true
		case strings.Contains(err.Error(), "kannuki: release"):
			return outRelease, true
		case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
			return outFnCtx, false
		case saidonce.Problem(err.Error()) != "":
			return outUnclear, true
		}
		return outEntered, true
	}
	if err == nil {
		if try && !ran {
			return outNotPrefix + kannuki.ReasonHeld.String(), false
		}
		return outUnclear, false // nil error, yet fn did not run
	}
	if saidonce.Problem(err.Error()) != "" {
		return outUnclear, true
	}
	var na *kannuki.NotAcquiredError
	if errors.As(err, &na) {
		routine := na.Reason == kannuki.ReasonHeld || na.Reason == kannuki.ReasonTimeout || na.Reason == kannuki.ReasonCanceled
		return outNotPrefix + na.Reason.String(), !routine
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return outCtx, false
	}
	return outAcquire, true
}
