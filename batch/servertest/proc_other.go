//go:build unix && !linux

package servertest

import "syscall"

// sysProcAttr puts the child in its own process group. Without Linux's
// parent-death signal, servers rely on t.Cleanup and Main to be stopped.
func sysProcAttr(cred *syscall.Credential) *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Credential: cred}
}
