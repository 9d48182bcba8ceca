package engine

import (
	"context"
	"errors"

	"github.com/provisioner/provisioner/internal/run"
	"github.com/provisioner/provisioner/partition"
)

// stepFailure classifies the failure of a partitions policy's step. Until the first
// write the steps only read the disks, compare them with the plan, bring up what they
// hold and probe it (the verify policy): the disks are as they were, and the step's own
// error says why, as the machine's failure (ErrEnvironment) unless the disks do not hold
// the planned layout. From the first write on, a disk may hold part of the layout
// (ErrWrite).
func stepFailure(err error, written bool) error {
	if written {
		return &classified{ErrWrite, err}
	}
	var step *partition.StepError
	if errors.As(err, &step) {
		err = step.Err
	}
	if errors.Is(err, partition.ErrMismatch) || errors.Is(err, partition.ErrNoGPT) {
		return err
	}
	return &classified{ErrEnvironment, err}
}

// probeFS asks blkid what a device holds (partition.ProbeFS); a failure is the
// machine's.
func probeFS(ctx context.Context, r run.Runner, dev string) (partition.FSInfo, error) {
	info, err := partition.ProbeFS(ctx, r, dev)
	if err != nil {
		return info, &classified{ErrEnvironment, err}
	}
	return info, nil
}
