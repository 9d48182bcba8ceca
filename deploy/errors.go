package deploy

import (
	"context"
	"errors"
	"slices"

	"github.com/provisioner/provisioner/internal/confine"
	"golang.org/x/sys/unix"
)

// ErrWrite is matched by errors of writing an image onto its target that the target
// caused: the filesystem or device is full, read-only or failing. The target then holds
// part of the image; the image itself may be fine.
var ErrWrite = errors.New("write failure")

// writeError tags err as a write failure (exit code 5) without changing its text.
type writeError struct{ err error }

func (e *writeError) Error() string   { return e.err.Error() }
func (e *writeError) Unwrap() []error { return []error{e.err, ErrWrite} }

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

// classified reports whether err already says whose fault it is.
func classified(err error) bool { return errors.Is(err, ErrImage) || errors.Is(err, ErrWrite) }

// classifyTree tags the error of an operation on the tree an image is extracted into
// by its errno: a write failure when the target filesystem failed, an image error when
// the archive asked for something impossible there. Anything else, and every error of a
// run whose ctx is done (the cancellation is the cause; whoever cancelled reports it),
// stays as it is.
func classifyTree(ctx context.Context, err error) error {
	if err == nil || ctx.Err() != nil || classified(err) {
		return err
	}
	var errno unix.Errno
	if errors.As(err, &errno) && slices.Contains(shapeErrnos, errno) || errors.Is(err, confine.ErrUnsafe) {
		// A symlink, device node or FIFO where a directory or regular file must be is
		// the image's doing too.
		return &imageError{err}
	}
	return classifyDevice(ctx, err)
}

// classifyDevice tags the error of writing a device or syncing a filesystem as a write
// failure when its errno says the target failed; the image's shape has no part in it.
func classifyDevice(ctx context.Context, err error) error {
	if err == nil || ctx.Err() != nil || classified(err) {
		return err
	}
	var errno unix.Errno
	if errors.As(err, &errno) && slices.Contains(targetErrnos, errno) {
		return &writeError{err}
	}
	return err
}

// streamErr tags an error of reading the image (fetch, checksum, decompressor, tar
// format) as an image error, unless ctx is done: then the cancellation is the cause,
// whatever the reader made of it.
func streamErr(ctx context.Context, err error) error {
	if err == nil || ctx.Err() != nil || classified(err) {
		return err
	}
	return &imageError{err}
}
