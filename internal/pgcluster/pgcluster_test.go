package pgcluster

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestStart starts a cluster with a setting of its own and reads it back
// through psql, the server's own client.
func TestStart(t *testing.T) {
	c := Start(t, "max_locks_per_transaction=10")
	bin, _ := binDir()
	psql := filepath.Join(bin, "psql")
	if _, err := os.Stat(psql); err != nil {
		psql = "psql"
	}
	out, err := exec.Command(psql, "-h", "127.0.0.1", "-p", strconv.Itoa(c.Port), "-U", "postgres", "-d", "postgres",
		"-Atc", "show max_locks_per_transaction").CombinedOutput()
	if err != nil {
		t.Fatalf("psql: %v: %s", err, out)
	}
	if got := strings.TrimSpace(string(out)); got != "10" {
		t.Fatalf("max_locks_per_transaction = %q, want 10", got)
	}
}
