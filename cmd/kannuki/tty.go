package main

import (
	"os"

	"golang.org/x/term"
)

// fallbackWidth is assumed for a terminal that does not report its size
// (a serial console, a pty nobody sized).
const fallbackWidth = 80

// terminal tells whether f is a terminal that can redraw a line in place,
// and its width in columns. TERM=dumb (Emacs shell buffers, some CI
// consoles) counts as no terminal: it shows "\r" and escape codes raw.
func terminal(f *os.File, getenv func(string) string) (width int, ok bool) {
	fd := int(f.Fd())
	if !term.IsTerminal(fd) || getenv("TERM") == "dumb" {
		return 0, false
	}
	w, _, err := term.GetSize(fd)
	if err != nil || w <= 0 {
		w = fallbackWidth
	}
	return w, true
}
