package engine

import (
	"errors"

	"github.com/provisioner/provisioner/deploy"
	"github.com/provisioner/provisioner/internal/confine"
	"github.com/provisioner/provisioner/partition"
	"github.com/provisioner/provisioner/schema"
)

// Exit codes are part of the interface: a conductor or a script branches on them, and
// ExitCode is the one place that decides which class an error belongs to.
const (
	ExitOK          = 0
	ExitFailure     = 1 // usage errors and anything unclassified
	ExitInvalidSpec = 2 // the spec is invalid or its layout does not fit
	ExitEnvironment = 3 // a device, file or tool is missing, a disk is busy or locked, or the disks do not match (verify) or cannot take a changed spec (plan --against)
	ExitImage       = 4 // an image could not be fetched, verified, read or extracted, or a tree holds an unsafe entry
	ExitWrite       = 5 // writing a disk failed part-way, or a target filesystem filled up
)

// ExitCode maps err to the process's exit code by the class it matches (errors.Is), so
// every package keeps its own sentinel and no caller needs to know them all.
func ExitCode(err error) int {
	switch {
	case err == nil:
		return ExitOK
	case errors.Is(err, ErrInterrupted):
		// Whatever the interrupted step reported (a cut download is no image error):
		// 5 once the disks were written, else 1.
		if errors.Is(err, ErrWrite) {
			return ExitWrite
		}
		return ExitFailure
	case errors.Is(err, schema.ErrInvalid), errors.Is(err, partition.ErrLayout):
		return ExitInvalidSpec
	case errors.Is(err, deploy.ErrImage), errors.Is(err, confine.ErrUnsafe):
		// A symlink, device node or FIFO where an image root or the boot files should hold
		// a regular file or directory: only a hostile image or a tampered disk does that.
		return ExitImage
	case errors.Is(err, ErrWrite):
		return ExitWrite
	case errors.Is(err, ErrEnvironment), errors.Is(err, partition.ErrMismatch), errors.Is(err, partition.ErrRefused):
		// A changed spec refused against the disks as they are is the same class as a
		// deploy whose disks do not hold what keep_data or verify needs.
		return ExitEnvironment
	}
	return ExitFailure
}
