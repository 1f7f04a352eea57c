package kannuki

// TimerPerNode makes l's queues (the waiting report and the keepalive
// checks) use a runtime timer per entry, so that benchmarks can pair the
// shared timer against the standard library's way in the same run.
func TimerPerNode(l *Locker) {
	l.waits.TimerPerNode, l.checks.TimerPerNode = true, true
}
