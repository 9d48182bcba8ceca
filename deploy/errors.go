package deploy

import (
	"context"
	"errors"
	"slices"

	"github.com/provisioner/provisioner/internal/confine"
	"golang.org/x/sys/unix"
)

// ErrImage is matched by errors about an image itself: it cannot be fetched, fails its
// checksum, has an unknown format, does not decompress, is truncated, or holds an entry
// that is hostile or that the tree cannot take.
var ErrImage = errors.New("image error")

// ErrWrite is matched by errors of writing an image onto its target that the target
// caused: the filesystem or device is full, read-only or failing. The target then holds
// part of the image; the image itself may be fine.
var ErrWrite = errors.New("write failure")

// faultError tags err with whose fault it is, ErrImage (exit code 4) or ErrWrite (exit
// code 5), without changing its text.
type faultError struct{ err, fault error }

func (e *faultError) Error() string   { return e.err.Error() }
func (e *faultError) Unwrap() []error { return []error{e.err, e.fault} }

// blame tags err with fault, ErrImage or ErrWrite, whatever the state of the run: for
// what the deploy itself finds wrong with the image's data.
func blame(fault, err error) error { return &faultError{err: err, fault: fault} }

// classify tags the error of an operation with the fault that judge finds in it (ErrImage,
// ErrWrite, or nil for neither). It leaves err as it is when it already says whose fault
// it is, and while ctx is done: the cancellation is the cause then, whatever the
// operation made of it, and whoever cancelled reports it.
func classify(ctx context.Context, judge func(error) error, err error) error {
	if err == nil || ctx.Err() != nil || errors.Is(err, ErrImage) || errors.Is(err, ErrWrite) {
		return err
	}
	if fault := judge(err); fault != nil {
		return blame(fault, err)
	}
	return err
}

// streamFault judges an error of reading the image (fetch, checksum, decompressor, tar
// format): it is the image's.
func streamFault(error) error { return ErrImage }

// deviceFault judges an error of writing a device or syncing a filesystem: the target's
// when its errno says the target failed; the image's shape has no part in it.
func deviceFault(err error) error {
	if hasErrno(err, targetErrnos) {
		return ErrWrite
	}
	return nil
}

// treeFault judges an error of an operation on the tree an image is extracted into: the
// image's when the archive asked for something impossible there, or put a symlink,
// device node or FIFO where a directory or regular file must be; otherwise as deviceFault.
func treeFault(err error) error {
	if hasErrno(err, shapeErrnos) || errors.Is(err, confine.ErrUnsafe) {
		return ErrImage
	}
	return deviceFault(err)
}

// targetErrnos are the errors of a filesystem or device operation that the target
// causes, whatever the image: it is full (blocks, inodes, quota), read-only, failing or
// gone, or cannot hold a file that large.
var targetErrnos = []unix.Errno{
	unix.ENOSPC, unix.EDQUOT, unix.EIO, unix.EROFS, unix.EFBIG,
	unix.EUCLEAN, unix.EBADMSG, // corrupted metadata, failed checksums (ext4, xfs)
	unix.ENXIO, unix.ENODEV, unix.ENOMEDIUM,
}

// shapeErrnos are the errors of a filesystem operation that the archive causes: it asks
// for a tree that cannot exist (a symlink loop, a file where a directory must be, a
// directory in the way, names too long) or metadata the kernel or the filesystem refuses
// (owners out of range, links or nodes the filesystem cannot hold, xattrs it rejects).
var shapeErrnos = []unix.Errno{
	unix.ELOOP, unix.ENOTDIR, unix.EISDIR, unix.ENOTEMPTY, unix.EEXIST, unix.ENAMETOOLONG,
	unix.EINVAL, unix.EOVERFLOW, unix.ERANGE, unix.EPERM, unix.EMLINK, unix.EXDEV,
	unix.EOPNOTSUPP, unix.E2BIG,
}

// hasErrno reports whether err carries one of errnos.
func hasErrno(err error, errnos []unix.Errno) bool {
	var errno unix.Errno
	return errors.As(err, &errno) && slices.Contains(errnos, errno)
}
