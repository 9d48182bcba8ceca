package engine

import (
	"context"
	"errors"
	"fmt"
	"sync"
)

// ErrInterrupted is matched by the error of a run whose context was cancelled (a signal,
// an agent shutting down) before it finished.
var ErrInterrupted = errors.New("interrupted")

// InterruptedError is the error of a partition or deploy run that was cancelled. The
// cleanup of a failure has run: everything is unmounted and detached, and a clean deploy
// has erased the partition tables it wrote unless told to keep them. It matches
// ErrInterrupted, its Cause and, once the disks were written, ErrWrite; not the failure
// the cancellation caused inside the step (a download cut short is not the image's
// fault), which Err keeps for people.
type InterruptedError struct {
	// Cause is why the run was cancelled (context.Cause), e.g. "interrupted by SIGTERM".
	Cause error
	// Step is the phase that was running (a Phase constant).
	Step string
	// Written is true once the first disk write began.
	Written bool
	// Erased is true when the partition tables written were erased afterwards.
	Erased bool
	// Err is the failure the cancellation caused in Step.
	Err error
}

// Error reads "interrupted by SIGTERM before anything was written", or, after the
// first write, names the step, its failure and what was done about the disks.
func (e *InterruptedError) Error() string {
	if !e.Written {
		return fmt.Sprintf("%v before anything was written", e.Cause)
	}
	left := "the disks are left part-written"
	if e.Erased {
		left = "the disks were left part-written and their partition tables erased"
	}
	return fmt.Sprintf("%v during step %s (%v); %s", e.Cause, e.Step, e.Err, left)
}

// Unwrap exposes ErrInterrupted, the cause and, after a write, ErrWrite.
func (e *InterruptedError) Unwrap() []error {
	errs := []error{ErrInterrupted, e.Cause}
	if e.Written {
		errs = append(errs, ErrWrite)
	}
	return errs
}

// runState is what a run's cleanup needs to describe an interruption: the phase reached
// and whether the disks were written and erased.
type runState struct {
	mu      sync.Mutex
	phase   string
	written bool
	erased  bool
}

// track returns an emitter that records each event's phase before passing it on.
func (s *runState) track(next emitter) emitter {
	return func(ev Event) {
		if ev.Phase != "" {
			s.mu.Lock()
			s.phase = ev.Phase
			s.mu.Unlock()
		}
		next.emit(ev)
	}
}

func (s *runState) setWritten() {
	s.mu.Lock()
	s.written = true
	s.mu.Unlock()
}

func (s *runState) setErased() {
	s.mu.Lock()
	s.erased = true
	s.mu.Unlock()
}

func (s *runState) wasWritten() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.written
}

// interrupted turns err, the failure of a run whose context is done, into an
// *InterruptedError; other errors pass unchanged.
func (s *runState) interrupted(ctx context.Context, err error) error {
	if err == nil || ctx.Err() == nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return &InterruptedError{Cause: context.Cause(ctx), Step: s.phase, Written: s.written, Erased: s.erased, Err: err}
}
