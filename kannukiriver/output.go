package kannukiriver

import (
	"encoding/json"

	"github.com/riverqueue/river/rivertype"
)

// SkipOutput is the output (river.RecordOutput) of a job that the middleware
// skipped as a duplicate. River stores it in the job's metadata under
// "output"; read it back with SkippedKey.
type SkipOutput struct {
	// Skipped is always true: the job did not run.
	Skipped bool `json:"kannuki_skipped"`
	// Key is the lock key that a running duplicate held (without the
	// Locker's prefix).
	Key string `json:"kannuki_key"`
}

// SkippedKey reports whether job was completed as a skipped duplicate by
// the middleware, and the key of the duplicate it gave way to. job is a row
// read back from River after the job finished (Client.JobGet, JobList, or a
// job event).
func SkippedKey(job *rivertype.JobRow) (key string, skipped bool) {
	if job == nil {
		return "", false
	}
	out := job.Output()
	if len(out) == 0 {
		return "", false
	}
	var so SkipOutput
	if err := json.Unmarshal(out, &so); err != nil || !so.Skipped {
		return "", false
	}
	return so.Key, true
}
