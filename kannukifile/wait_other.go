//go:build darwin || dragonfly || freebsd || netbsd || openbsd

package kannukifile

import "context"

// wakerPool is empty on these systems: they have no inotify (kqueue could
// watch the file, which is left for later), so waiters poll.
type wakerPool struct{}

func (*wakerPool) newWaker(context.Context, string) waker { return pollWaker{} }

func (*wakerPool) close() error { return nil }
