package pgsql

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/kannuki-go/kannuki/internal/saidonce"
	"github.com/kannuki-go/kannuki/store"
)

// serverErr is a server's answer with a SQLSTATE.
type serverErr string

func (e serverErr) Error() string { return "ERROR: something (SQLSTATE " + string(e) + ")" }

var (
	errTxDone = errors.New("tx is closed")
	errNoConn = errors.New("conn closed")
)

// fakeTx is a TxConn that answers from a script and records the
// statements it was given.
type fakeTx struct {
	granted  bool
	tryErr   error
	prepErr  error
	waitErr  error
	aborted  bool
	execErrs []error // one per Exec, in order; nil after the last
	gone     bool
	onTry    func()

	waits []string
	execs []string
	own   bool
}

func (f *fakeTx) Try(context.Context, store.Key, store.Mode) (bool, error) {
	if f.onTry != nil {
		f.onTry()
	}
	return f.granted, f.tryErr
}
func (f *fakeTx) PrepareWait(context.Context) error { return f.prepErr }
func (f *fakeTx) Wait(_ context.Context, text string, own bool) (bool, error) {
	f.waits, f.own = append(f.waits, text), own
	return f.aborted, f.waitErr
}

func (f *fakeTx) Exec(_ context.Context, text string) error {
	f.execs = append(f.execs, text)
	if len(f.execErrs) == 0 {
		return nil
	}
	err := f.execErrs[0]
	f.execErrs = f.execErrs[1:]
	return err
}

func (f *fakeTx) Code(err error) string {
	var s serverErr
	if errors.As(err, &s) {
		return string(s)
	}
	return ""
}
func (f *fakeTx) Gone(error) bool     { return f.gone }
func (f *fakeTx) Done(err error) bool { return errors.Is(err, errTxDone) }

var txKey = store.Key{String: "the-key", ID: 42}

func wantCause(t *testing.T, what string, err error, want ...error) {
	t.Helper()
	if err == nil {
		t.Fatalf("%s: nil error, want %v", what, want)
	}
	for _, w := range want {
		if !errors.Is(err, w) {
			t.Errorf("%s: %v does not match %v", what, err, w)
		}
	}
	msg := err.Error()
	if p := saidonce.Repeats(msg); p != "" {
		t.Errorf("%s: %q: %s", what, msg, p)
	}
	if strings.Contains(msg, txKey.String) || strings.Contains(msg, "%!") || strings.Contains(msg, "pgx:") {
		t.Errorf("%s: %q names the key, has a bad verb or a driver prefix", what, msg)
	}
}

func TestTxRequestChecks(t *testing.T) {
	f := &fakeTx{granted: true}
	//lint:ignore SA1012 a nil context is what is checked
	wantCause(t, "nil context", AcquireTx(nil, f, txKey, store.Request{}), store.ErrInvalidArgument)
	wantCause(t, "bad mode", AcquireTx(context.Background(), f, txKey, store.Request{Mode: 9}), store.ErrInvalidArgument)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	wantCause(t, "canceled", AcquireTx(ctx, f, txKey, store.Request{}), context.Canceled)
}

func TestTxTry(t *testing.T) {
	ctx := context.Background()
	if err := AcquireTx(ctx, &fakeTx{granted: true}, txKey, store.Request{}); err != nil {
		t.Fatalf("granted try: %v", err)
	}
	// A grant of the try is kept, even when ctx ended during the try.
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	g := &fakeTx{granted: true, onTry: cancel}
	if err := AcquireTx(cctx, g, txKey, store.Request{Wait: store.WaitForever}); err != nil {
		t.Fatalf("granted try, ctx ended during it: %v", err)
	}
	f := &fakeTx{}
	wantCause(t, "refused try", AcquireTx(ctx, f, txKey, store.Request{}), store.ErrNotAcquired)
	if len(f.waits)+len(f.execs) != 0 {
		t.Errorf("a refused try ran %v %v", f.waits, f.execs)
	}
	for _, c := range []struct {
		what string
		err  error
		want []error
	}{
		{"lock table full", serverErr(CodeLockTableFull), []error{store.ErrCapacity}},
		{"tx done", errTxDone, []error{store.ErrInvalidArgument, errTxDone}},
		{"not in a block (status)", ErrNotInTx, []error{store.ErrInvalidArgument, ErrNotInTx}},
		{"not in a block (25P01)", serverErr(CodeNoActiveTx), []error{store.ErrInvalidArgument, ErrNotInTx}},
		{"aborted", serverErr(CodeTxAborted), []error{store.ErrInvalidArgument}},
		{"no answer", errNoConn, []error{errNoConn}},
		{"other", serverErr("XX000"), []error{serverErr("XX000")}},
	} {
		wantCause(t, c.what, AcquireTx(ctx, &fakeTx{tryErr: c.err}, txKey, store.Request{Wait: store.WaitForever}), c.want...)
	}
	err := AcquireTx(ctx, &fakeTx{tryErr: errNoConn}, txKey, store.Request{})
	if !strings.Contains(err.Error(), "unusable") {
		t.Errorf("no answer: %q does not say the transaction is unusable", err)
	}
}

func TestTxWait(t *testing.T) {
	ctx := context.Background()
	forever := store.Request{Wait: store.WaitForever}

	f := &fakeTx{waitErr: nil}
	if err := AcquireTx(ctx, f, txKey, forever); err != nil {
		t.Fatalf("granted wait: %v", err)
	}
	if len(f.waits) != 1 || f.waits[0] != XactWait(txKey, store.ModeExclusive, -1) || f.own {
		t.Errorf("wait %q (own deadline %v), want one XactWait with lock_timeout 0", f.waits, f.own)
	}
	if len(f.execs) != 1 || f.execs[0] != ReleaseSavepoint {
		t.Errorf("after a grant: %q, want the savepoint released", f.execs)
	}

	cases := []struct {
		what  string
		fake  fakeTx
		want  []error
		execs []string
	}{
		{"lock_timeout", fakeTx{waitErr: serverErr(CodeLockNotAvailable)}, []error{store.ErrNotAcquired}, []string{RollbackSavepoint}},
		{"deadlock", fakeTx{waitErr: serverErr(CodeDeadlock)}, []error{store.ErrDeadlock}, []string{RollbackSavepoint}},
		{"lock table full", fakeTx{waitErr: serverErr(CodeLockTableFull)}, []error{store.ErrCapacity}, []string{RollbackSavepoint}},
		{"canceled by the server", fakeTx{waitErr: serverErr(CodeQueryCanceled)}, []error{store.ErrNotAcquired}, []string{RollbackSavepoint}},
		{"other answer", fakeTx{waitErr: serverErr("XX000")}, []error{serverErr("XX000")}, []string{RollbackSavepoint}},
		{"aborted tx", fakeTx{waitErr: serverErr(CodeTxAborted)}, []error{store.ErrInvalidArgument}, nil},
		{"no answer", fakeTx{waitErr: errNoConn}, []error{errNoConn}, nil},
		{"gone", fakeTx{waitErr: serverErr("57P01"), gone: true}, []error{serverErr("57P01")}, nil},
		{"prepare failed", fakeTx{prepErr: errNoConn}, []error{errNoConn}, nil},
		{"clean-up retried", fakeTx{waitErr: serverErr(CodeDeadlock), execErrs: []error{serverErr(CodeQueryCanceled)}},
			[]error{store.ErrDeadlock}, []string{RollbackSavepoint, RollbackSavepoint}},
		{"clean-up failed", fakeTx{waitErr: serverErr(CodeDeadlock), execErrs: []error{errNoConn}},
			[]error{store.ErrDeadlock, errNoConn}, []string{RollbackSavepoint}},
	}
	for _, c := range cases {
		f := c.fake
		wantCause(t, c.what, AcquireTx(ctx, &f, txKey, forever), c.want...)
		if strings.Join(f.execs, "|") != strings.Join(c.execs, "|") {
			t.Errorf("%s: clean-up %q, want %q", c.what, f.execs, c.execs)
		}
	}
}

// TestTxWaitCtx: the ends of ctx during a wait.
func TestTxWaitCtx(t *testing.T) {
	forever := store.Request{Wait: store.WaitForever}

	// A grant that raced the cancellation is rolled back.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	f := &fakeTx{}
	err := AcquireTx(context.WithValue(ctx, AfterWaitKey{}, func() { cancel() }), f, txKey, forever)
	wantCause(t, "raced grant", err, context.Canceled)
	if len(f.execs) != 1 || f.execs[0] != RollbackSavepoint {
		t.Errorf("raced grant: %q, want the savepoint rolled back", f.execs)
	}

	// The driver's own cancellation: the transaction is lost, even when
	// the statement returned no error.
	ctx, cancel = context.WithCancel(context.Background())
	f = &fakeTx{aborted: true}
	err = AcquireTx(context.WithValue(ctx, AfterWaitKey{}, func() { t.Error("hook ran after an aborted wait") }), f, txKey, forever)
	cancel()
	wantCause(t, "aborted", err)
	if !strings.Contains(err.Error(), "unusable") || len(f.execs) != 0 {
		t.Errorf("aborted: %q, clean-up %q; want the transaction unusable and no clean-up", err, f.execs)
	}

	// A deadline sooner than the wait becomes its lock_timeout, and a
	// lock_timeout at it is the deadline's error.
	dctx, dcancel := context.WithTimeout(context.Background(), time.Hour)
	defer dcancel()
	f = &fakeTx{waitErr: serverErr(CodeLockNotAvailable)}
	wantCause(t, "deadline as lock_timeout", AcquireTx(dctx, f, txKey, store.Request{Wait: 2 * time.Hour}), context.DeadlineExceeded)
	if !f.own || len(f.waits) != 1 || !strings.Contains(f.waits[0], "'lock_timeout', '3") {
		t.Errorf("deadline: wait %q (own deadline %v), want lock_timeout near an hour", f.waits, f.own)
	}

	// A timed wait that comes first keeps its own timeout.
	f = &fakeTx{waitErr: serverErr(CodeLockNotAvailable)}
	wantCause(t, "timed wait", AcquireTx(dctx, f, txKey, store.Request{Wait: time.Minute}), store.ErrNotAcquired)
	if f.own {
		t.Error("timed wait: the deadline was folded in")
	}
}
