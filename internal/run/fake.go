package run

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
)

// Fake is a Runner for unit tests: it records every call and answers from Handler, so
// code that drives mkfs or sgdisk can be tested without root, disks or the tools. It is
// safe for concurrent use; its zero value succeeds for every call.
type Fake struct {
	mu    sync.Mutex
	calls []Call
	// Handler decides what a call returns; nil means success with empty output. It runs
	// outside Fake's lock, so it may be slow, block, or call Calls itself.
	Handler func(call Call) (Result, error)
}

// Call is one recorded invocation. Stdin is read in full because the input (a
// partition script, a key) is often what a test needs to check.
type Call struct {
	Argv           []string
	Stdin          []byte
	Env            []string
	MountNamespace bool // as asked in Cmd; nothing is unshared
}

// Run records cmd and returns what Handler says. A done ctx returns ctx.Err() without
// recording or calling Handler, as Exec would not start the program; an empty argv is
// refused as Exec refuses it.
func (f *Fake) Run(ctx context.Context, cmd Cmd) (Result, error) {
	if len(cmd.Argv) == 0 {
		return Result{}, errEmptyArgv
	}
	if err := ctx.Err(); err != nil {
		return Result{}, err
	}
	call := Call{Argv: slices.Clone(cmd.Argv), Env: slices.Clone(cmd.Env), MountNamespace: cmd.MountNamespace}
	if cmd.Stdin != nil {
		in, err := io.ReadAll(cmd.Stdin)
		if err != nil {
			return Result{}, fmt.Errorf("fake %s: reading stdin: %w", cmd.Argv[0], err)
		}
		call.Stdin = in
	}
	f.mu.Lock()
	f.calls = append(f.calls, call)
	h := f.Handler
	f.mu.Unlock()
	if h == nil {
		return Result{}, nil
	}
	return h(cloneCall(call))
}

// Calls returns a copy of the calls so far, in order, that the caller may keep or modify.
func (f *Fake) Calls() []Call {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]Call, len(f.calls))
	for i, c := range f.calls {
		out[i] = cloneCall(c)
	}
	return out
}

// Commands returns String(argv) of each call, in order, so a test can compare the whole
// sequence of programs run against one literal list.
func (f *Fake) Commands() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]string, len(f.calls))
	for i, c := range f.calls {
		out[i] = String(c.Argv)
	}
	return out
}

func cloneCall(c Call) Call {
	return Call{Argv: slices.Clone(c.Argv), Stdin: slices.Clone(c.Stdin), Env: slices.Clone(c.Env), MountNamespace: c.MountNamespace}
}

// Fail builds the *Error a real failing program would give, so Handlers exercise the
// same error paths (and messages) as Exec. A negative code stands for a program killed
// by a signal.
func Fail(argv []string, code int, stderr string) error {
	var err error
	if code < 0 {
		code, err = -1, errors.New("signal: killed")
	} else {
		err = fmt.Errorf("exit status %d", code)
	}
	return &Error{Argv: slices.Clone(argv), ExitCode: code, Stderr: stderr, Err: err}
}
