package run

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"slices"
	"sync"
	"time"
)

// Streamer is implemented by runners that can stream a program's output as it is
// produced (Exec). It exists for filters such as decompressors, whose output is far too
// large to capture in a Result. Fake and DryRun do not implement it, so code that
// streams must keep a pure Go path for them.
type Streamer interface {
	Stream(ctx context.Context, cmd Cmd) (io.ReadCloser, error)
}

var _ Streamer = Exec{}

// Stream starts cmd with stdin from cmd.Stdin and returns its stdout as a reader. Reading
// reaches EOF when the program closes stdout; Close waits for it and returns a *Error (with
// the captured stderr, exit code and argv, like Run) when it failed or was killed; a Read
// that sees EOF while the program failed returns that *Error instead of io.EOF, so a
// truncated decompression is never mistaken for success. ctx kills the program and its
// process group, as in Run.
//
// When reading cmd.Stdin fails (a download cut, a checksum mismatch), that error is what
// the end of the output reports, together with the program's *Error if it failed: a
// filter fed a cut input may well exit 0. Close before EOF abandons the output: it kills
// the program and reports only a failure that came before. A program that exits but
// leaves a child holding stdout open makes Read fail (ExitCode 0) once no byte came for
// the wait delay, as Run does, instead of hanging.
func (e Exec) Stream(ctx context.Context, cmd Cmd) (io.ReadCloser, error) {
	if len(cmd.Argv) == 0 {
		return nil, errEmptyArgv
	}
	s := &stream{argv: slices.Clone(cmd.Argv), done: make(chan struct{})}
	s.cmd = s.command(ctx, cmd)
	opened, inW, err := s.pipes(cmd.Stdin)
	start := time.Now()
	if err == nil {
		err = checkDir(cmd.Dir)
	}
	if err == nil {
		err = s.cmd.Start()
	}
	if err != nil {
		for _, f := range opened {
			f.Close()
		}
		err = &Error{Argv: s.argv, ExitCode: -1, Err: err}
		if e.Logger != nil {
			e.Logger.DebugContext(ctx, "stream", "argv", String(s.argv), "exit", -1, "err", err)
		}
		return nil, err
	}
	// The child has its own copies; ours of the far ends would keep EOF from coming.
	s.cmd.Stdout.(*os.File).Close()
	if inW != nil {
		s.cmd.Stdin.(*os.File).Close()
		s.fed = make(chan error, 1)
		go feed(inW, cmd.Stdin, s.fed)
	}
	go s.reap(ctx, e.Logger, start)
	return s, nil
}

// command builds the program's exec.Cmd as Run does, with stderr captured into s; stdin
// and stdout are left to pipes.
func (s *stream) command(ctx context.Context, cmd Cmd) *exec.Cmd {
	c := exec.CommandContext(ctx, cmd.Argv[0], cmd.Argv[1:]...)
	c.Dir = cmd.Dir
	if len(cmd.Env) > 0 {
		c.Env = append(os.Environ(), cmd.Env...)
	}
	c.SysProcAttr = sysProcAttr(cmd)
	s.killed = groupKill(c)
	c.Stderr = &s.stderr
	c.WaitDelay = waitDelay
	return c
}

// pipes connects the program's stdout, and its stdin unless that is nil or a file, to
// pipes of our own rather than os/exec's: their far ends are *os.Files handed to the
// child as they are, so Wait waits neither for stdout (it runs while the caller reads)
// nor for a Read of stdin that may block (os/exec cannot interrupt one). It returns every
// file it opened, also on failure, for a failed start to close, and the write end of the
// stdin pipe (nil when there is none).
func (s *stream) pipes(stdin io.Reader) (opened []*os.File, inW *os.File, err error) {
	pr, pw, err := os.Pipe()
	if err != nil {
		return nil, nil, fmt.Errorf("creating the output pipe: %w", err)
	}
	s.r = pr
	s.cmd.Stdout = pw
	opened = append(opened, pr, pw)
	switch in := stdin.(type) {
	case nil:
	case *os.File:
		s.cmd.Stdin = in
	default:
		inR, w, err := os.Pipe()
		if err != nil {
			return opened, nil, fmt.Errorf("creating the input pipe: %w", err)
		}
		s.cmd.Stdin, inW = inR, w
		opened = append(opened, inR, inW)
	}
	return opened, inW, nil
}

// reap waits for the program, logs how it ended (with the time since start) when log is
// set, and then lets Read and Close see the outcome.
func (s *stream) reap(ctx context.Context, log *slog.Logger, start time.Time) {
	s.waitErr = s.wait(ctx)
	if log != nil {
		attrs := []any{"argv", String(s.argv), "duration", time.Since(start), "exit", s.code}
		if s.waitErr != nil {
			attrs = append(attrs, "err", s.waitErr)
		}
		log.DebugContext(ctx, "stream", attrs...)
	}
	// A Read blocked right now must not wait forever for a child the program left
	// holding stdout; Read pushes this further on while bytes keep coming.
	s.r.SetReadDeadline(time.Now().Add(waitDelay))
	close(s.done)
}

// feed copies src into the program's stdin, reports on fed a failure to read src, and
// closes stdin. A failure to write means the program stopped reading, which its exit
// status tells better.
func feed(w *os.File, src io.Reader, fed chan<- error) {
	buf := make([]byte, 256<<10)
	var err error
	for {
		n, rerr := src.Read(buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				break
			}
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			err = rerr
			break
		}
	}
	// Reported before closing: the program sees EOF, and may exit, only after this.
	fed <- err
	w.Close()
}

// stream is the reader Stream returns. Like most readers it is for one goroutine at a
// time; ctx is what stops it from elsewhere.
type stream struct {
	r      *os.File
	cmd    *exec.Cmd
	killed func() bool // reports whether ctx killed the program's process group
	argv   []string
	fed    chan error // nil when no feeder runs; gets its result once

	stderr bytes.Buffer // written by os/exec until Wait returns, read after done

	done    chan struct{} // closed when the program was waited for
	code    int           // set before done is closed
	waitErr error         // set before done is closed

	readErr   error // sticky: io.EOF or the error a Read returned
	closeOnce sync.Once
	closeErr  error
}

// wait reaps the program and builds the error Run would give for the same outcome,
// led by the input's error when reading the input failed.
func (s *stream) wait(ctx context.Context) error {
	err := s.cmd.Wait()
	if s.killed() {
		waitGroupGone(s.cmd.Process.Pid)
	}
	s.code = -1
	if s.cmd.ProcessState != nil {
		s.code = s.cmd.ProcessState.ExitCode()
	}
	if err != nil {
		// As in Run: when we killed it through ctx, the context's error leads.
		if ctxErr := ctx.Err(); ctxErr != nil {
			s.code = -1
			if !errors.Is(err, ctxErr) {
				err = fmt.Errorf("%w: %w", ctxErr, err)
			}
		}
		err = &Error{Argv: s.argv, ExitCode: s.code, Stderr: s.stderr.String(), Err: err}
	}
	if s.fed == nil {
		return err
	}
	// A program that consumed its input to the end has closed it only after the feeder
	// finished, so this does not block then; one that exited early leaves the feeder
	// in a Read that Close waits for.
	select {
	case ferr := <-s.fed:
		s.fed = nil
		if ferr != nil {
			if err != nil {
				return fmt.Errorf("reading the input of %s: %w (%w)", s.argv[0], ferr, err)
			}
			return fmt.Errorf("reading the input of %s: %w", s.argv[0], ferr)
		}
	default:
	}
	return err
}

// Read reads the program's stdout. At its end it returns io.EOF only when the program
// succeeded, and its error otherwise.
func (s *stream) Read(p []byte) (int, error) {
	if s.readErr != nil {
		return 0, s.readErr
	}
	select {
	case <-s.done:
		// The program is gone: what is left in the pipe arrives at once unless a child
		// it left behind holds the pipe open, which must not hang us.
		s.r.SetReadDeadline(time.Now().Add(waitDelay))
	default:
	}
	n, err := s.r.Read(p)
	switch {
	case err == nil:
		return n, nil
	case err == io.EOF:
		<-s.done
		s.readErr = io.EOF
		if s.waitErr != nil {
			s.readErr = s.waitErr
		}
	case errors.Is(err, os.ErrDeadlineExceeded):
		<-s.done
		s.readErr = s.waitErr
		if s.readErr == nil {
			s.readErr = &Error{Argv: s.argv, ExitCode: s.code, Stderr: s.stderr.String(), Err: exec.ErrWaitDelay}
		}
	default:
		s.readErr = &Error{Argv: s.argv, ExitCode: -1, Err: fmt.Errorf("reading the output: %w", err)}
	}
	return n, s.readErr
}

// Close releases the pipe and waits for the program (killing it first when its output
// was not read to the end). It returns the program's error, if any, as described on
// Stream. It also waits, up to the wait delay, for a Read of cmd.Stdin still in flight,
// so that the caller may use that reader again afterwards.
func (s *stream) Close() error {
	s.closeOnce.Do(func() {
		abandoned := s.readErr == nil
		if abandoned {
			select {
			case <-s.done:
				// It ended on its own before we gave up on it: its failure counts.
				abandoned = false
			default:
				killGroup(s.cmd.Process.Pid)
			}
		}
		// Closing our end also unblocks a child stuck writing into a full pipe.
		s.r.Close()
		<-s.done
		if abandoned {
			waitGroupGone(s.cmd.Process.Pid)
		}
		switch {
		case abandoned:
		case s.readErr != nil && s.readErr != io.EOF:
			s.closeErr = s.readErr
		default:
			s.closeErr = s.waitErr
		}
		if s.fed != nil {
			select {
			case <-s.fed:
			case <-time.After(waitDelay):
			}
		}
	})
	return s.closeErr
}
