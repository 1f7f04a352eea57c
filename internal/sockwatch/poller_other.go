//go:build !linux

package sockwatch

import (
	"net"
	"time"
)

// Poller watches nothing on this platform: Arm returns ErrUnsupported and
// backends rely on their keepalive.
type Poller struct {
	// Delay is ignored here.
	Delay time.Duration
}

// Arm returns ErrUnsupported.
func (p *Poller) Arm(w *Watch, c net.Conn) error { return ErrUnsupported }

// Disarm does nothing.
func (p *Poller) Disarm(w *Watch) {}

// Len is 0.
func (p *Poller) Len() int { return 0 }

// Armed is false.
func (w *Watch) Armed() bool { return false }
