package run

import (
	"errors"
	"io"
	"os"
	"os/exec"
	"slices"
)

// Process is a program started to keep running beside its caller (a server a test
// needs), until it is killed or exits by itself.
type Process struct {
	argv []string
	cmd  *exec.Cmd
	done chan struct{}
	err  error
}

// Start starts argv with its output to stdout and stderr (nil: discarded) and returns at
// once. Unlike Run, nothing waits for the program: Kill stops it, Done says when it ended.
func Start(argv []string, stdout, stderr io.Writer) (*Process, error) {
	if len(argv) == 0 {
		return nil, errEmptyArgv
	}
	p := &Process{argv: slices.Clone(argv), done: make(chan struct{})}
	p.cmd = exec.Command(argv[0], argv[1:]...)
	p.cmd.Stdout, p.cmd.Stderr = stdout, stderr
	if err := p.cmd.Start(); err != nil {
		return nil, &Error{Argv: p.argv, ExitCode: -1, Err: err}
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// Done is closed once the program has ended.
func (p *Process) Done() <-chan struct{} { return p.done }

// Kill stops the program at once (SIGKILL) and waits for it to end; a program that ended
// already is not an error.
func (p *Process) Kill() error {
	err := p.cmd.Process.Signal(os.Kill)
	<-p.done
	if errors.Is(err, os.ErrProcessDone) {
		return nil
	}
	return err
}

// Err is how the program ended (nil for exit status 0), once Done is closed.
func (p *Process) Err() error {
	<-p.done
	return p.err
}
