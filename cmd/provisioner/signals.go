package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/provisioner/provisioner/internal/engine"
	"golang.org/x/sys/unix"
)

// stopSignals stop a run: ^C on a terminal, a service manager's stop, a terminal that
// went away.
var stopSignals = []os.Signal{syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP}

// signalError is the cause of a run cancelled by a signal; the error a run ends with
// names it.
type signalError struct{ sig os.Signal }

func (e *signalError) Error() string { return "interrupted by " + signalName(e.sig) }

// signalName is the conventional name of sig, such as SIGTERM.
func signalName(sig os.Signal) string {
	if s, ok := sig.(syscall.Signal); ok {
		if name := unix.SignalName(s); name != "" {
			return name
		}
	}
	return sig.String()
}

// signalExitCode is the shell's code for a process killed by sig: 128 + its number.
func signalExitCode(sig os.Signal) int {
	if s, ok := sig.(syscall.Signal); ok {
		return 128 + int(s)
	}
	return engine.ExitFailure
}

// handleSignals returns a context that the first stop signal cancels, so that the run
// fails where it stands and cleans up as after any failure (unmount, detach, erase what
// a clean deploy wrote), and a function that stops listening. A second signal exits at
// once, without cleaning up, for a cleanup that hangs.
func handleSignals(parent context.Context, errw io.Writer, exit func(int)) (context.Context, func()) {
	ch := make(chan os.Signal, 2)
	signal.Notify(ch, stopSignals...)
	ctx, stop := watchSignals(parent, ch, errw, exit)
	return ctx, func() {
		signal.Stop(ch)
		stop()
	}
}

// watchSignals is handleSignals with the signals read from ch, so tests can send them.
func watchSignals(parent context.Context, ch <-chan os.Signal, errw io.Writer, exit func(int)) (context.Context, func()) {
	ctx, cancel := context.WithCancelCause(parent)
	done := make(chan struct{})
	go func() {
		var first os.Signal
		for {
			select {
			case <-done:
				return
			case sig := <-ch:
				if first == nil {
					first = sig
					fmt.Fprintf(errw, "provisioner: %s: stopping; cleaning up (a second signal exits at once)\n", signalName(sig))
					cancel(&signalError{sig})
					continue
				}
				fmt.Fprintf(errw, "provisioner: %s again: exiting at once, without cleaning up\n", signalName(sig))
				exit(signalExitCode(sig))
				return
			}
		}
	}()
	return ctx, func() {
		close(done)
		cancel(nil)
	}
}
