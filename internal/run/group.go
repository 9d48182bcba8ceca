package run

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"strconv"
	"sync/atomic"
	"syscall"
	"time"
)

// groupKill makes c start in a process group of its own and makes a done context kill
// that whole group, not only the program: what the program started (grub-install's
// helpers, os-prober's mounts) must not go on writing a disk that the caller is about to
// unmount, erase or detach. killed reports whether the context killed it, so the caller
// knows to wait for the group (waitGroupGone) before cleaning up.
func groupKill(c *exec.Cmd) (killed func() bool) {
	if c.SysProcAttr == nil {
		c.SysProcAttr = &syscall.SysProcAttr{}
	}
	c.SysProcAttr.Setpgid = true
	var did atomic.Bool
	c.Cancel = func() error {
		did.Store(true)
		return killGroup(c.Process.Pid)
	}
	return did.Load
}

// killGroup sends SIGKILL to process group pgid.
func killGroup(pgid int) error {
	err := syscall.Kill(-pgid, syscall.SIGKILL)
	if errors.Is(err, syscall.ESRCH) {
		return os.ErrProcessDone
	}
	return err
}

// waitGroupGone waits, at most the wait delay, until no live process is left in process
// group pgid. A process killed with SIGKILL may still be finishing a write in the kernel,
// and its children are not ours to wait for, so polling is the only way to know.
func waitGroupGone(pgid int) {
	deadline := time.Now().Add(waitDelay)
	for groupAlive(pgid) && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
}

// groupAlive reports whether process group pgid has a member that is not a zombie. A
// zombie counts as gone: it holds no files, and whether it is ever reaped depends on
// the machine's init, not on us.
func groupAlive(pgid int) bool {
	if syscall.Kill(-pgid, 0) != nil {
		return false // ESRCH: the group is empty
	}
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return true
	}
	want := strconv.Itoa(pgid)
	for _, e := range ents {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		state, pgrp, ok := procState(e.Name())
		if ok && pgrp == want && state != "Z" && state != "X" {
			return true
		}
	}
	return false
}

// procState reads the state and process group of a process from /proc/PID/stat.
func procState(pid string) (state, pgrp string, ok bool) {
	b, err := os.ReadFile("/proc/" + pid + "/stat")
	if err != nil {
		return "", "", false
	}
	// The command name, in parentheses, may hold spaces and parentheses itself: the
	// fields that follow start after the last ')'. They are: state ppid pgrp ...
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return "", "", false
	}
	f := bytes.Fields(b[i+1:])
	if len(f) < 3 {
		return "", "", false
	}
	return string(f[0]), string(f[2]), true
}
