package chaos

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"sync"
)

// FiguresEnv names the environment variable holding the path of the file
// the tests append their Figures to (one JSON object per line). Unset, the
// tests record nothing.
const FiguresEnv = "KANNUKI_CHAOS_FIGURES"

// Figure is what one chaos case measured, for RELIABILITY.md.
type Figure struct {
	// Case is the test's name (t.Name()).
	Case string `json:"case"`
	// Backend names the backend and driver ("pgxv5", "pg/lib-pq", "mysql", "file", ...).
	Backend string `json:"backend,omitempty"`
	// Counts are the case's counters: cycles, overlaps, kills, restarts, ...
	Counts map[string]int64 `json:"counts,omitempty"`
	// Errors counts the errors the case saw, by kind.
	Errors map[string]int64 `json:"errors,omitempty"`
	// Millis are durations in milliseconds (time to recover, longest call, ...).
	Millis map[string]float64 `json:"millis,omitempty"`
	// Samples are a few error messages, one per kind, as the caller saw them.
	Samples map[string]string `json:"samples,omitempty"`
	// Notes are free-form remarks (what was skipped and why, settings).
	Notes []string `json:"notes,omitempty"`
}

var recordMu sync.Mutex

// Record appends f to the file named by $KANNUKI_CHAOS_FIGURES, if set.
func Record(f Figure) error {
	path := os.Getenv(FiguresEnv)
	if path == "" {
		return nil
	}
	line, err := json.Marshal(f)
	if err != nil {
		return err
	}
	recordMu.Lock()
	defer recordMu.Unlock()
	file, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return err
	}
	// One write of a whole line: concurrent writers (test processes) never
	// interleave within it.
	_, werr := file.Write(append(line, '\n'))
	cerr := file.Close()
	return errors.Join(werr, cerr)
}

// ReadFigures reads the figures recorded in path. A missing file means none.
func ReadFigures(path string) ([]Figure, error) {
	file, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer file.Close()
	var out []Figure
	sc := bufio.NewScanner(file)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for n := 1; sc.Scan(); n++ {
		var f Figure
		if err := json.Unmarshal(sc.Bytes(), &f); err != nil {
			return nil, fmt.Errorf("%s:%d: %w", path, n, err)
		}
		out = append(out, f)
	}
	return out, sc.Err()
}
