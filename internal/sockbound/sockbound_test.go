package sockbound

import (
	"errors"
	"net"
	"os"
	"testing"
	"time"

	"github.com/kannuki-go/kannuki/internal/due"
)

// TestBound: a read still blocked at its deadline is failed by the
// watchdog and End reports it; a statement that ended in time leaves the
// socket alone, also when the watchdog calls late for it.
func TestBound(t *testing.T) {
	q := &due.Queue{Fire: Fire}
	client, server := pipe(t)
	var b Bound

	// Overdue: nothing answers, the watchdog fails the read.
	b.Start(q, client, time.Now().Add(20*time.Millisecond))
	_, err := client.Read(make([]byte, 1))
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("blocked read: %v, want a deadline error", err)
	}
	if !b.End(q) {
		t.Fatal("End after the watchdog fired = false")
	}

	// In time, on a fresh socket: the answer comes, End says not fired.
	client, server = pipe(t)
	b.Start(q, client, time.Now().Add(time.Hour))
	go func() { _, _ = server.Write([]byte{1}) }()
	if _, err := client.Read(make([]byte, 1)); err != nil {
		t.Fatalf("answered read: %v", err)
	}
	if b.End(q) {
		t.Fatal("End of a prompt statement = true")
	}

	// A late call for the ended statement does nothing.
	Fire(&b.node)
	go func() { _, _ = server.Write([]byte{2}) }()
	if _, err := client.Read(make([]byte, 1)); err != nil {
		t.Fatalf("read after a late Fire: %v", err)
	}
}

func pipe(t *testing.T) (client, server net.Conn) {
	client, server = net.Pipe()
	t.Cleanup(func() { _ = client.Close(); _ = server.Close() })
	return client, server
}
