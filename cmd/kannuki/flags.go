package main

import (
	"errors"
	"flag"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// common holds the flags every store-using command takes.
type common struct {
	dsn     string
	json    bool
	verbose bool
}

func (c *common) register(fs *flag.FlagSet) {
	fs.StringVar(&c.dsn, "dsn", "", "lock store `DSN` (default $KANNUKI_DSN, else the embedded file store; see kannuki help dsn)")
	fs.BoolVar(&c.json, "json", false, "print machine-readable JSON")
	fs.BoolVar(&c.verbose, "v", false, "log lock events to stderr")
}

// dsnOrEnv is --dsn, else $KANNUKI_DSN.
func (a *app) dsnOrEnv(c *common) string {
	if c.dsn != "" {
		return c.dsn
	}
	return a.getenv(envDSN)
}

// flagSet returns a FlagSet that reports nothing itself: parse does.
func (a *app) flagSet(name, usage string) *flag.FlagSet {
	fs := flag.NewFlagSet("kannuki "+name, flag.ContinueOnError)
	fs.SetOutput(a.stderr)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), usage, "\nFlags:\n")
		fs.PrintDefaults()
	}
	return fs
}

// parse parses args. With interspersed, flags may also follow positional
// arguments (kannuki status KEY --json); without it, parsing stops at the
// first positional argument or "--", which is how run finds the command.
// ok is false when the command should exit with code (help shown, or a
// usage error reported).
func (a *app) parse(fs *flag.FlagSet, args []string, interspersed bool) (pos []string, code int, ok bool) {
	for {
		fs.SetOutput(discard{})
		err := fs.Parse(args)
		fs.SetOutput(a.stderr)
		if errors.Is(err, flag.ErrHelp) {
			fs.SetOutput(a.stdout)
			fs.Usage()
			return nil, exitOK, false
		}
		if err != nil {
			fmt.Fprintf(a.stderr, "%s: %v\nRun \"%s --help\" for usage.\n", fs.Name(), err, fs.Name())
			return nil, exitError, false
		}
		rest := fs.Args()
		if !interspersed || len(rest) == 0 {
			return append(pos, rest...), 0, true
		}
		// fs.Parse consumed a "--" if the previous token was one: everything
		// after it is positional.
		if len(args) > len(rest) && args[len(args)-len(rest)-1] == "--" {
			return append(pos, rest...), 0, true
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

// waitFlag is a lock wait: a Go duration ("30s", "1m30s") or a number of
// seconds ("30", "0.5"), like flock(1) -w. 0 means one try.
type waitFlag struct {
	d   time.Duration
	set bool
}

func (w *waitFlag) String() string {
	if !w.set {
		return ""
	}
	return w.d.String()
}

func (w *waitFlag) Set(s string) error {
	d, err := parseWait(s)
	if err != nil {
		return err
	}
	w.d, w.set = d, true
	return nil
}

func parseWait(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	var d time.Duration
	if f, err := strconv.ParseFloat(s, 64); err == nil {
		if f > float64(1<<62)/float64(time.Second) {
			return 0, fmt.Errorf("%q is too long", s)
		}
		d = time.Duration(f * float64(time.Second))
	} else if d, err = time.ParseDuration(s); err != nil {
		return 0, fmt.Errorf("%q is not a duration (like 30s, 1m30s) or a number of seconds", s)
	}
	if d < 0 {
		return 0, fmt.Errorf("%q is negative", s)
	}
	return d, nil
}
