//go:build !linux

package main

import "os/exec"

// prepareChild has nothing to set outside Linux: there is no parent-death
// signal, and a command outlives a killed kannuki (and its lock).
func prepareChild(*exec.Cmd) (undo func()) { return func() {} }
