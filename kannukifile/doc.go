// Package kannukifile is Kannuki's embedded default backend: operating
// system file locks (flock(2)), one lock file per key under a directory.
// It needs no database and excludes every process of one host that uses
// the same directory, including the kannuki CLI. The kernel frees a lock
// when its holder dies, however it dies.
//
// One host only: flock does not coordinate hosts over a network
// filesystem, so New refuses a directory on NFS, SMB/CIFS, Ceph, AFS or
// Coda (Linux; Options.AllowNetworkFS overrides). Use a database backend
// for locks across hosts.
//
// # Lock files
//
// The file of a key is named after the key's hex SHA-256, behind a short
// readable prefix made of the key's letters and digits only
// ("myapp_order_123-<sha256>.lock"), so no key, whatever bytes it holds
// ("../../etc/passwd", "/", NUL, a megabyte), can name a file outside the
// directory. Files are opened with O_NOFOLLOW: a symlink planted in the
// directory is refused, never followed.
//
// Lock files are never deleted. Deleting a lock file on release races with
// other lockers: a process that opened the old file before the unlink
// would lock an orphaned inode while a newcomer locks a new file under the
// same name, and both would "hold" the key. Each file is small (the
// readable record below), one per distinct key ever used; remove the
// directory's files only when no process uses it. If a lock file is
// removed or replaced anyway, Acquire notices and locks the new file, and
// a lease whose file was replaced reports itself lost (Check, Release).
//
// An exclusive holder writes a readable record into its lock file (the
// key, its pid, program and the time it acquired; one pwrite, the file
// keeps its size), for Locks and the CLI's status; a shared holder writes
// the key into an empty file only. The record is informational and stays
// after release: locks are the kernel's flock state alone, and Locks
// trusts a holder line only while the kernel shows its pid holding the
// file exclusively.
//
// # Capacity
//
// Every held lock keeps its lock file open, so what holding very many
// locks in one process runs into is the open-file limit: the process's
// RLIMIT_NOFILE (ulimit -n; Go raises the soft limit to the hard one at
// start) or the system's. An Acquire whose lock file cannot be opened for
// that (EMFILE, ENFILE) fails with an error matching store.ErrCapacity
// that names the limit and its value (the Locker reports it as
// kannuki.ReasonCapacity, with the count of locks it holds). Nothing is
// locked for it and every lock held before stays held. A waiter also
// keeps an inotify instance open while it waits (and the Backend up to 8
// idle ones); without a descriptor for one it polls instead. Raise the
// limit, or bound a Locker with kannuki.Options.MaxHeld below it.
//
// The file store needs no socket watch: the kernel holds a lock as long
// as its file is open, and nothing but the holder's own release or death
// ends it (a lock file removed or replaced is found by the keepalive
// check and the release).
//
// # Waiting without polling
//
// Linux cannot interrupt a blocking flock(LOCK_EX) from another thread
// (closing the descriptor does not wake it, and Go installs its signal
// handlers with SA_RESTART so a signal restarts the call). A goroutine
// left blocked in flock after its caller gave up would hold an OS thread,
// and then the lock itself, for as long as the current holder keeps it.
// So Kannuki never blocks in flock. A waiter instead:
//
//  1. queues in memory behind other waiters of this Backend for the same
//     key (FIFO; package kannukimem), so only the front of the queue
//     touches the file;
//  2. watches the lock file with inotify for close events (every release
//     by Kannuki, flock(1) and most tools ends with a close, and the
//     kernel closes the files of a dying holder), waiting in Go's network
//     poller, which a deadline or a canceled context interrupts;
//  3. tries flock(LOCK_NB) after the watch is in place and after every
//     event.
//
// Because the kernel announces the close of a dying holder's file just
// before it drops that file's locks, and because a tool may unlock without
// closing, a waiter also re-checks 1 ms after an event that did not let it
// in, then at doubling intervals up to every 250 ms. A long wait thus
// costs a few non-blocking flock calls per second, and a release by
// Kannuki wakes the next waiter at once. Where inotify is not available
// (other systems, or the per-user inotify limit reached) the waiter polls
// with flock(LOCK_NB) at doubling intervals from 1 ms up to 25 ms. Waiters
// across processes are not served in order: flock has no queue that a
// non-blocking waiter could join.
//
// Closing an inotify instance makes the closer wait for a kernel grace
// period (milliseconds), so each Backend keeps up to 8 idle instances for
// its next waiters; Backend.Close releases them.
//
// Timeouts use the monotonic clock; when a wait runs out, one last try is
// made before Acquire reports ErrNotAcquired.
package kannukifile
