package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	kstore "github.com/kannuki-go/kannuki/store"

	"github.com/kannuki-go/kannuki"
)

const usageStatus = `Usage: kannuki status [flags] KEY

Tells whether the lock KEY is held, and by whom where the store can tell:
the database session's pid, application and client address for PostgreSQL
(pg_locks, pg_stat_activity), the connection id, user and host for
MySQL/MariaDB (IS_USED_LOCK, the processlist), the holder's pid for the
file store.

Exit codes: 0 free, 1 held, 125 error (so "kannuki status KEY" succeeds
when "kannuki run --try" would get the lock now).
`

const usageLocks = `Usage: kannuki locks [flags]

Lists the locks held and awaited in the store: state, mode, the holder's
pid (database session or OS process), application, client, since when,
and the lock's name where the store knows it (PostgreSQL shows the key of
the locks kannuki run holds and of sessions whose last statement was a
Kannuki lock statement, else the numeric id; MySQL/MariaDB lock names are
the keys). Control characters in names are shown escaped (\n, \x1b).
`

// lockJSON is one lock in --json output.
type lockJSON struct {
	Name        string     `json:"name,omitempty"`
	ID          int64      `json:"id,omitempty"` // PostgreSQL advisory id
	Mode        string     `json:"mode"`
	Granted     bool       `json:"granted"` // false: waiting
	PID         int64      `json:"pid,omitempty"`
	Application string     `json:"application,omitempty"`
	Client      string     `json:"client,omitempty"`
	Since       *time.Time `json:"since,omitempty"`
}

func toJSON(li kstore.LockInfo) lockJSON {
	j := lockJSON{Name: li.Name, ID: li.ID, Mode: li.Mode.String(), Granted: li.Granted, PID: li.PID, Application: li.Application, Client: li.Client}
	if !li.Since.IsZero() {
		s := li.Since
		j.Since = &s
	}
	return j
}

// locksJSON is "kannuki locks --json".
type locksJSON struct {
	Locks []lockJSON `json:"locks"`
	Store string     `json:"store"`
	// Note says what the store cannot list (MySQL/MariaDB without the
	// settings that show held locks), as the text output says on stderr.
	Note string `json:"note,omitempty"`
}

// statusJSON is "kannuki status --json".
type statusJSON struct {
	Key     string     `json:"key"`
	Held    bool       `json:"held"`
	Holders []lockJSON `json:"holders"`
	Waiters []lockJSON `json:"waiters"`
	Store   string     `json:"store"`
}

// inspectContext ends on SIGINT/SIGTERM so a hung database does not need kill -9.
func inspectContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
}

func (a *app) status(ctx context.Context, args []string) int {
	var c common
	var prefix string
	fs := a.flagSet("status", usageStatus)
	c.register(fs)
	fs.StringVar(&prefix, "prefix", "", "key `PREFIX`, as given to kannuki run")
	pos, code, ok := a.parse(fs, args, true)
	if !ok {
		return code
	}
	if len(pos) != 1 {
		msg := fmt.Sprintf("kannuki status: want exactly one KEY, got %d arguments", len(pos))
		if c.json {
			return a.failJSON(nil, errors.New(msg))
		}
		fmt.Fprintf(a.stderr, "%s\nRun \"kannuki status --help\" for usage.\n", msg)
		return exitError
	}
	key := pos[0]
	if prefix != "" {
		key = prefix + "/" + key
	}
	fail := func(err error) int {
		if c.json {
			return a.failJSON(&key, err)
		}
		return a.fail(err)
	}
	ctx, stop := inspectContext(ctx)
	defer stop()
	st, err := a.open(ctx, a.dsnOrEnv(&c))
	if err != nil {
		return fail(err)
	}
	defer st.close()
	l := kannuki.New(st.backend, kannuki.Options{KeyPrefix: prefix, Logger: a.logger(&c)})
	k, err := l.Key(pos[0])
	if err != nil {
		return fail(err)
	}
	held, err := l.Held(ctx, pos[0])
	if err != nil {
		return fail(err)
	}
	out := statusJSON{Key: k.String, Held: held, Holders: []lockJSON{}, Waiters: []lockJSON{}, Store: st.where}
	infos, err := st.locks(ctx)
	if err != nil && !errors.Is(err, kannuki.ErrUnsupported) {
		return fail(err)
	}
	var holders, waiters []kstore.LockInfo
	for _, li := range infos {
		if !sameLock(st.kind, li, k) {
			continue
		}
		if li.Granted {
			holders = append(holders, li)
			out.Holders = append(out.Holders, toJSON(li))
		} else {
			waiters = append(waiters, li)
			out.Waiters = append(out.Waiters, toJSON(li))
		}
	}
	if held && len(holders) == 0 && st.holder != nil {
		li, err := st.holder(ctx, k)
		if err != nil {
			return fail(err)
		}
		if li != nil {
			holders = append(holders, *li)
			out.Holders = append(out.Holders, toJSON(*li))
		}
	}
	if c.json {
		if err := writeJSON(a.stdout, out); err != nil {
			return a.fail(err)
		}
	} else {
		a.printStatus(k, held, holders, waiters, st)
	}
	if held {
		return exitHeld
	}
	return exitOK
}

// sameLock reports whether a listed lock is key k: by advisory id on
// PostgreSQL (a listing shows names only for some sessions), by lock name
// on MySQL (which may fold case), by key on the file store.
func sameLock(kind string, li kstore.LockInfo, k kstore.Key) bool {
	switch kind {
	case kindPostgres:
		return !k.Pair && li.ID == k.ID
	case kindMySQL:
		return strings.EqualFold(li.Name, k.Name)
	}
	return li.Name == k.String || li.Name == k.Name
}

func (a *app) printStatus(k kstore.Key, held bool, holders, waiters []kstore.LockInfo, st *store) {
	w := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintf(w, "key\t%s\n", printable(k.String))
	state := "free"
	if held {
		state = "held"
	}
	fmt.Fprintf(w, "state\t%s\n", state)
	if held && len(holders) == 0 {
		fmt.Fprintf(w, "holder\tunknown (the store does not say)\n")
	}
	for _, h := range holders {
		fmt.Fprintf(w, "holder\t%s\n", describe(h))
	}
	for _, h := range waiters {
		fmt.Fprintf(w, "waiter\t%s\n", describe(h))
	}
	fmt.Fprintf(w, "store\t%s\n", st.where)
	w.Flush()
}

// describe is one lock holder or waiter on one line.
func describe(li kstore.LockInfo) string {
	var parts []string
	if li.PID != 0 {
		parts = append(parts, "pid "+strconv.FormatInt(li.PID, 10))
	}
	if li.Application != "" {
		parts = append(parts, printable(li.Application))
	}
	if li.Client != "" {
		parts = append(parts, "client "+printable(li.Client))
	}
	parts = append(parts, li.Mode.String())
	if !li.Since.IsZero() {
		parts = append(parts, "since "+li.Since.Local().Format(time.RFC3339)+" ("+time.Since(li.Since).Round(time.Second).String()+")")
	}
	return strings.Join(parts, ", ")
}

func (a *app) locks(ctx context.Context, args []string) int {
	var c common
	fs := a.flagSet("locks", usageLocks)
	c.register(fs)
	pos, code, ok := a.parse(fs, args, true)
	if !ok {
		return code
	}
	fail := a.fail
	if c.json {
		fail = func(err error) int { return a.failJSON(nil, err) }
	}
	if len(pos) != 0 {
		return fail(fmt.Errorf("kannuki locks: unexpected argument %q (for one key: kannuki status KEY)", pos[0]))
	}
	ctx, stop := inspectContext(ctx)
	defer stop()
	st, err := a.open(ctx, a.dsnOrEnv(&c))
	if err != nil {
		return fail(err)
	}
	defer st.close()
	infos, err := st.locks(ctx)
	if err != nil {
		return fail(err)
	}
	var note string
	if st.locksNote != nil {
		note = st.locksNote(ctx)
	}
	if c.json {
		out := locksJSON{Locks: []lockJSON{}, Store: st.where, Note: note}
		for _, li := range infos {
			out.Locks = append(out.Locks, toJSON(li))
		}
		if err := writeJSON(a.stdout, out); err != nil {
			return a.fail(err)
		}
		return exitOK
	}
	if note != "" {
		defer fmt.Fprintln(a.stderr, note)
	}
	if len(infos) == 0 {
		if note != "" {
			// Saying "no locks held" would be wrong: held ones may just
			// be invisible here.
			fmt.Fprintf(a.stdout, "no locks awaited in %s (held locks may be invisible: see the note)\n", st.where)
		} else {
			fmt.Fprintf(a.stdout, "no locks held or awaited in %s\n", st.where)
		}
		return exitOK
	}
	w := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "STATE\tMODE\tPID\tAPPLICATION\tCLIENT\tSINCE\tNAME")
	for _, li := range infos {
		state := "held"
		if !li.Granted {
			state = "waiting"
		}
		since := "-"
		if !li.Since.IsZero() {
			since = li.Since.Local().Format(time.DateTime)
		}
		name := li.Name
		if name == "" && li.ID != 0 {
			name = "(id " + strconv.FormatInt(li.ID, 10) + ")"
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", state, li.Mode, dash(pidString(li.PID)), dash(printable(li.Application)), dash(printable(li.Client)), since, dash(printable(name)))
	}
	w.Flush()
	return exitOK
}

func pidString(pid int64) string {
	if pid == 0 {
		return ""
	}
	return strconv.FormatInt(pid, 10)
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
