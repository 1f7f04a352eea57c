package main

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"time"

	uwidth "golang.org/x/text/width"

	"github.com/kannuki-go/kannuki"
	kstore "github.com/kannuki-go/kannuki/store"
)

// How "kannuki run" says that it waits. A lock that frees within
// waitNoticeAfter gets no line at all: most waits are that short, and a
// line flashing by on every run would be noise.
const (
	waitNoticeAfter = time.Second
	// waitRedraw is how often the in-place line on a terminal updates
	// the time waited.
	waitRedraw = time.Second
	// waitPlainEvery spaces the plain lines written when stderr is not a
	// terminal (a log, a cron mail): an hour's wait makes 60 lines.
	waitPlainEvery = time.Minute
	// waitHolderEvery bounds how often the holder is looked up: on a
	// database each look-up is a query.
	waitHolderEvery = 5 * time.Second
	// waitLookupTimeout bounds one look-up, so a slow listing cannot hold
	// the line back for long.
	waitLookupTimeout = 5 * time.Second
)

// Terminal control: back to the start of the line, and erase to its end.
const (
	carriageReturn = "\r"
	eraseLine      = "\x1b[K"
)

// waitDisplay tells a human that kannuki waits for a lock: which key, who
// holds it where the store says, and for how long. On a terminal it is one
// line redrawn in place and erased when the wait ends; otherwise plain
// lines, the first when the wait has lasted waitNoticeAfter.
type waitDisplay struct {
	out   io.Writer
	width func() (int, bool) // the terminal's width; false: not a terminal
	key   string
	start time.Time
	// holder describes who holds the key, "" when the store does not say.
	holder func(ctx context.Context) string

	began     chan struct{} // closed when the Locker reports the wait
	beganOnce sync.Once
	stopped   chan struct{} // closed by stop
	done      chan struct{} // closed when run has returned
	cancel    context.CancelFunc
}

// newWaitDisplay prepares a display for key, whose wait counts from
// start; width reports the terminal (nil, or false, for plain lines). It
// shows nothing before launch.
func newWaitDisplay(out io.Writer, width func() (int, bool), key string, start time.Time) *waitDisplay {
	return &waitDisplay{
		out: out, width: width, key: key, start: start,
		began: make(chan struct{}), stopped: make(chan struct{}), done: make(chan struct{}),
	}
}

// launch starts the display; holder describes who holds the key. The
// display ends with ctx or stop.
func (d *waitDisplay) launch(ctx context.Context, holder func(context.Context) string) {
	ctx, d.cancel = context.WithCancel(ctx)
	d.holder = holder
	go d.run(ctx)
}

// hook is the Locker hook that starts the display when the attempt turns
// into a wait.
func (d *waitDisplay) hook() kannuki.Hook { return d }

// LockEvent implements kannuki.Hook. It never blocks, as a hook must not.
func (d *waitDisplay) LockEvent(_ context.Context, e kannuki.Event) {
	if e.Kind == kannuki.EventWaiting {
		d.beganOnce.Do(func() { close(d.began) })
	}
}

// stop ends the display, erasing the line on a terminal, and returns once
// nothing more will be written: the caller may print right after it.
func (d *waitDisplay) stop() {
	if d == nil {
		return
	}
	d.cancel()
	close(d.stopped)
	<-d.done
}

func (d *waitDisplay) run(ctx context.Context) {
	defer close(d.done)
	select {
	case <-d.began:
	case <-d.stopped:
		return
	}
	_, tty := d.terminal()
	t := time.NewTimer(time.Until(d.start.Add(waitNoticeAfter)))
	defer t.Stop()
	var (
		holder string
		looked time.Time
		shown  bool
	)
	for {
		select {
		case <-d.stopped:
			if shown && tty {
				fmt.Fprint(d.out, carriageReturn+eraseLine)
			}
			return
		case <-t.C:
		}
		if looked.IsZero() || time.Since(looked) >= waitHolderEvery {
			lctx, cancel := context.WithTimeout(ctx, waitLookupTimeout)
			holder = d.holder(lctx)
			cancel()
			looked = time.Now()
		}
		line := waitLine(d.key, time.Since(d.start), holder)
		if width, ok := d.terminal(); tty && ok {
			// Written after the text, the erase leaves no flicker and
			// removes the rest of a longer previous line.
			fmt.Fprint(d.out, carriageReturn+fitWidth(line, width)+eraseLine)
			t.Reset(waitRedraw)
		} else {
			fmt.Fprintln(d.out, line)
			t.Reset(waitPlainEvery)
		}
		shown = true
	}
}

func (d *waitDisplay) terminal() (int, bool) {
	if d.width == nil {
		return 0, false
	}
	return d.width()
}

// waitLine is the text of the display.
func waitLine(key string, waited time.Duration, holder string) string {
	s := "kannuki: waiting " + waited.Truncate(time.Second).String() + " for lock " + strconv.Quote(key)
	if holder != "" {
		s += " held by " + holder
	}
	return s
}

// fitWidth cuts line to fit a terminal width columns wide, leaving the
// last column free: writing into it makes some terminals wrap, and the
// next "\r" would then redraw only the second row. East Asian wide and
// fullwidth characters take two columns.
func fitWidth(line string, width int) string {
	room := width - 1
	for i, r := range line {
		w := 1
		if k := uwidth.LookupRune(r).Kind(); k == uwidth.EastAsianWide || k == uwidth.EastAsianFullwidth {
			w = 2
		}
		if w > room {
			return line[:i]
		}
		room -= w
	}
	return line
}

// holderText describes the holders of a lock for the waiting line:
// "pid 4242 (kannuki, client 10.0.0.5, since 20:51:10)", and how many more
// hold it in shared mode.
func holderText(holders []kstore.LockInfo) string {
	if len(holders) == 0 {
		return ""
	}
	h := holders[0]
	var parts []string
	if h.Application != "" {
		parts = append(parts, printable(h.Application))
	}
	if h.Client != "" {
		parts = append(parts, "client "+printable(h.Client))
	}
	if h.Mode == kstore.ModeShared {
		parts = append(parts, "shared")
	}
	if !h.Since.IsZero() {
		parts = append(parts, "since "+clock(h.Since))
	}
	var s string
	if h.PID != 0 {
		s = "pid " + strconv.FormatInt(h.PID, 10)
	} else {
		s = "a process the store does not name"
	}
	if len(parts) > 0 {
		s += " (" + strings.Join(parts, ", ") + ")"
	}
	switch n := len(holders) - 1; n {
	case 0:
	case 1:
		s += " and 1 more"
	default:
		s += " and " + strconv.Itoa(n) + " more"
	}
	return s
}

// clock is t as a time of day when it is today, else with the date.
func clock(t time.Time) string {
	t = t.Local()
	if y, m, d := t.Date(); time.Now().Year() == y && time.Now().Month() == m && time.Now().Day() == d {
		return t.Format(time.TimeOnly)
	}
	return t.Format(time.DateTime)
}

// holderOf returns the look-up of who holds key, as "kannuki status" does
// it: the store's listing, else (MySQL/MariaDB without a listing of held
// locks) the store's own question about one key. Errors count as "the
// store does not say": the line is a courtesy, the wait goes on anyway.
func holderOf(l *kannuki.Locker, st *store, key string) func(context.Context) string {
	k, kerr := l.Key(key)
	return func(ctx context.Context) string {
		if kerr != nil {
			return ""
		}
		infos, _ := st.locks(ctx)
		var holders []kstore.LockInfo
		for _, li := range infos {
			if li.Granted && sameLock(st.kind, li, k) {
				holders = append(holders, li)
			}
		}
		if len(holders) == 0 && st.holder != nil {
			if li, err := st.holder(ctx, k); err == nil && li != nil {
				holders = append(holders, *li)
			}
		}
		return holderText(holders)
	}
}
