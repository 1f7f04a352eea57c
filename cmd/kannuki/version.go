package main

import (
	"fmt"
	"runtime"
	"runtime/debug"
)

// version is set at release time with -ldflags "-X main.version=v1.2.3";
// otherwise it comes from the module's build information.
var version = ""

const usageVersion = `Usage: kannuki version

Prints kannuki's version, the VCS revision it was built from when known,
and the Go version.
`

func (a *app) version(args []string) int {
	fs := a.flagSet("version", usageVersion)
	pos, code, ok := a.parse(fs, args, true)
	if !ok {
		return code
	}
	if len(pos) != 0 {
		fmt.Fprintf(a.stderr, "kannuki version: unexpected argument %q\n", pos[0])
		return exitError
	}
	fmt.Fprintln(a.stdout, versionString())
	return exitOK
}

func versionString() string {
	v, rev, dirty := version, "", false
	if bi, ok := debug.ReadBuildInfo(); ok {
		if v == "" {
			v = bi.Main.Version
		}
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value
				if len(rev) > 12 {
					rev = rev[:12]
				}
			case "vcs.modified":
				dirty = s.Value == "true"
			}
		}
	}
	if dirty && rev != "" {
		rev += "+dirty"
	}
	if v == "" {
		v = "(devel)"
	}
	s := "kannuki " + v
	if rev != "" {
		s += " " + rev
	}
	return s + " " + runtime.Version() + " " + runtime.GOOS + "/" + runtime.GOARCH
}
