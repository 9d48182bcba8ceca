package run

import (
	"context"
	"fmt"
	"io"
	"os/exec"
	"slices"
	"syscall"
)

// Interactive runs argv attached to the given streams (a console shell for diagnosis in
// the deploy ramdisk) and waits for it. Nothing is captured; the program gets its own
// session with the terminal on stdin as its controlling terminal when it is one, so job
// control and ^C work in it and not in the provisioner.
func Interactive(ctx context.Context, argv []string, stdin io.Reader, stdout, stderr io.Writer) error {
	if len(argv) == 0 {
		return errEmptyArgv
	}
	c := exec.CommandContext(ctx, argv[0], argv[1:]...)
	c.Stdin, c.Stdout, c.Stderr = stdin, stdout, stderr
	c.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: isTTY(stdin), Ctty: 0}
	if err := c.Run(); err != nil {
		code := -1
		if c.ProcessState != nil {
			code = c.ProcessState.ExitCode()
		}
		return &Error{Argv: slices.Clone(argv), ExitCode: code, Err: fmt.Errorf("interactive: %w", err)}
	}
	return nil
}

// isTTY reports whether r is a terminal, which Setctty needs as the child's fd 0.
func isTTY(r io.Reader) bool {
	f, ok := r.(interface{ Fd() uintptr })
	if !ok {
		return false
	}
	return isTerminalFd(f.Fd())
}
