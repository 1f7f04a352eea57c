package main

// errorJSON is what "kannuki status --json" and "kannuki locks --json"
// print on stdout instead of their result when they fail, with the fields
// "kannuki run --json" uses for the same.
type errorJSON struct {
	Key      *string `json:"key,omitempty"` // status only
	Result   string  `json:"result"`        // "error"
	ExitCode int     `json:"exit_code"`
	Error    string  `json:"error"`
}

// failJSON reports err as an errorJSON on stdout, where a script reading
// the JSON output looks, and returns exitError.
func (a *app) failJSON(key *string, err error) int {
	if werr := writeJSON(a.stdout, errorJSON{Key: key, Result: "error", ExitCode: exitError, Error: a.red.String(message(err))}); werr != nil {
		return a.fail(err)
	}
	return exitError
}
