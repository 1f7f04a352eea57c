package main

import (
	"os/exec"
	"runtime"
	"syscall"
)

// prepareChild makes the kernel kill the command when kannuki dies: the
// lock dies with kannuki (its file or database session closes), so the
// command must not go on running unprotected. SIGKILL, because a command
// that trapped SIGTERM would go on without the lock.
//
// Pdeathsig fires when the thread that started the child ends, not the
// process, so the starting goroutine stays on its thread until the child
// has been waited for; the returned func undoes that.
func prepareChild(cmd *exec.Cmd) (undo func()) {
	runtime.LockOSThread()
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	return runtime.UnlockOSThread
}
