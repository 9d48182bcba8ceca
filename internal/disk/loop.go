package disk

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"
)

// Loop is a loop device this process attached to a regular file. Loop devices are shared by
// every process on the machine, so a Loop remembers which file it was bound to and Detach
// touches the device only while it is still bound to that file.
type Loop struct {
	Path string // /dev/loopN
	File string // the backing file, absolute

	fileDev, fileIno uint64 // identity of File when attached
	detached         bool
}

// loopControl is the loop-control node; AttachLoop has no Sys, and loop numbers only make
// sense against the real /dev.
const loopControl = "/dev/loop-control"

// loopConfigure is LOOP_CONFIGURE; tests replace it to exercise the fallback for kernels
// older than 5.8.
var loopConfigure = unix.IoctlLoopConfigure

// attachAttempts bounds the retries when other processes keep taking the free loop number
// between LOOP_CTL_GET_FREE and our configure.
const attachAttempts = 100

// AttachLoop attaches file to a free loop device: LOOP_CTL_GET_FREE on /dev/loop-control,
// retrying with a new number when another process grabs the same one first (EBUSY on
// LOOP_CONFIGURE or LOOP_SET_FD). The device is read-write with the given logical sector size
// (512, 1024, 2048 or 4096; 0 means 512), set atomically with LOOP_CONFIGURE's block_size or,
// on kernels without it, with LOOP_SET_FD + LOOP_SET_STATUS64 + LOOP_SET_BLOCK_SIZE.
// Autoclear is off, so the device does not vanish when a tool we run closes it; partition
// scanning is off, because a kernel without parsers (our CI host) finds nothing and a BLKRRPART
// on a scanning loop would drop the partitions we add with BLKPG (see Reread).
// Partitions left on the loop number by an earlier user are removed before it is returned.
func AttachLoop(ctx context.Context, file string, sectorSize uint64) (*Loop, error) {
	return attachLoop(ctx, file, sectorSize, false)
}

// AttachLoopReadOnly attaches file as AttachLoop does, but read-only (LO_FLAGS_READ_ONLY,
// the file opened O_RDONLY): it works on a file this process may not write (an immutable
// file, a read-only filesystem), and nothing written through the device, not even an ext4
// journal replay, can reach the file.
func AttachLoopReadOnly(ctx context.Context, file string, sectorSize uint64) (*Loop, error) {
	return attachLoop(ctx, file, sectorSize, true)
}

func attachLoop(ctx context.Context, file string, sectorSize uint64, readOnly bool) (*Loop, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if sectorSize == 0 {
		sectorSize = 512
	}
	if sectorSize < 512 || sectorSize > 4096 || sectorSize&(sectorSize-1) != 0 {
		return nil, fmt.Errorf("attaching %s to a loop device: sector size %d is not 512, 1024, 2048 or 4096", file, sectorSize)
	}
	abs, err := filepath.Abs(file)
	if err != nil {
		return nil, fmt.Errorf("attaching %s to a loop device: %w", file, err)
	}
	mode := os.O_RDWR
	if readOnly {
		mode = os.O_RDONLY
	}
	bf, err := os.OpenFile(abs, mode|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("attaching %s to a loop device: %w", abs, err)
	}
	defer bf.Close() // the loop device holds its own reference to the file
	var st unix.Stat_t
	if err := unix.Fstat(int(bf.Fd()), &st); err != nil {
		return nil, fmt.Errorf("attaching %s to a loop device: %w", abs, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return nil, fmt.Errorf("attaching %s to a loop device: not a regular file", abs)
	}
	ctl, err := os.OpenFile(loopControl, os.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("attaching %s to a loop device: %w", abs, err)
	}
	defer ctl.Close()

	for attempt := 1; ; attempt++ {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("attaching %s to a loop device: %w", abs, err)
		}
		n, err := unix.IoctlRetInt(int(ctl.Fd()), unix.LOOP_CTL_GET_FREE)
		if err != nil {
			return nil, fmt.Errorf("attaching %s to a loop device: LOOP_CTL_GET_FREE: %w", abs, err)
		}
		path := fmt.Sprintf("/dev/loop%d", n)
		raced, err := configureLoop(ctx, path, int(bf.Fd()), abs, sectorSize, readOnly)
		if raced && attempt < attachAttempts {
			continue // another process configured this number first; ask for a new one
		}
		if err != nil {
			return nil, fmt.Errorf("attaching %s to %s: %w", abs, path, err)
		}
		l := &Loop{Path: path, File: abs, fileDev: uint64(st.Dev), fileIno: st.Ino}
		if err := (Sys{}).RemovePartitions(ctx, path); err != nil {
			// Unbind without the partition step that just failed; the stale partitions were
			// there before us.
			err = fmt.Errorf("attaching %s to %s: clearing partitions an earlier user left: %w", abs, path, err)
			return nil, errors.Join(err, l.unbind(context.WithoutCancel(ctx)))
		}
		return l, nil
	}
}

// configureLoop binds the backing file bfd to the loop node path. raced is true when the
// number was taken by someone else (EBUSY at bind time), and nothing was changed.
func configureLoop(ctx context.Context, path string, bfd int, name string, sectorSize uint64, readOnly bool) (raced bool, err error) {
	lf, err := openLoopNode(ctx, path)
	if err != nil {
		return false, err
	}
	defer lf.Close()
	lfd := int(lf.Fd())

	// No LO_FLAGS_AUTOCLEAR, no LO_FLAGS_PARTSCAN; read-write unless asked.
	var flags uint32
	if readOnly {
		flags = unix.LO_FLAGS_READ_ONLY
	}
	cfg := unix.LoopConfig{Fd: uint32(bfd), Size: uint32(sectorSize)}
	cfg.Info.Flags = flags
	copy(cfg.Info.File_name[:len(cfg.Info.File_name)-1], name)
	err = loopConfigure(lfd, &cfg)
	switch {
	case err == nil:
		return false, nil
	case errors.Is(err, unix.EBUSY):
		return true, err
	case !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOTTY):
		return false, fmt.Errorf("LOOP_CONFIGURE: %w", err)
	}

	// Kernels before 5.8 answer LOOP_CONFIGURE with EINVAL: bind first, then set the rest.
	// LOOP_SET_FD makes the device read-only by itself when bfd was opened O_RDONLY.
	if err := unix.IoctlSetInt(lfd, unix.LOOP_SET_FD, bfd); err != nil {
		return errors.Is(err, unix.EBUSY), fmt.Errorf("LOOP_SET_FD: %w", err)
	}
	info := unix.LoopInfo64{}
	copy(info.File_name[:len(info.File_name)-1], name)
	if err := unix.IoctlLoopSetStatus64(lfd, &info); err != nil {
		return false, errors.Join(fmt.Errorf("LOOP_SET_STATUS64: %w", err), clearFD(lfd))
	}
	if err := unix.IoctlSetInt(lfd, unix.LOOP_SET_BLOCK_SIZE, int(sectorSize)); err != nil {
		return false, errors.Join(fmt.Errorf("LOOP_SET_BLOCK_SIZE %d: %w", sectorSize, err), clearFD(lfd))
	}
	return false, nil
}

func clearFD(lfd int) error {
	if err := unix.IoctlSetInt(lfd, unix.LOOP_CLR_FD, 0); err != nil {
		return fmt.Errorf("LOOP_CLR_FD: %w", err)
	}
	return nil
}

// openLoopNode opens a loop node, allowing devtmpfs a moment to create a node that
// LOOP_CTL_GET_FREE has just added.
func openLoopNode(ctx context.Context, path string) (*os.File, error) {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	for {
		f, err := os.OpenFile(path, os.O_RDWR|unix.O_CLOEXEC, 0)
		if err == nil || !errors.Is(err, os.ErrNotExist) {
			return f, err
		}
		select {
		case <-ctx.Done():
			return nil, err
		case <-time.After(pollEvery):
		}
	}
}

// Detach removes the loop device's partitions first (BLKPG), then unbinds the file with
// LOOP_CLR_FD and waits (at most 10 s) until the kernel has let go of it. It is safe to call
// twice and after someone else detached the device: it acts only while the device is still
// bound to the file this Loop attached, so it never detaches another process's loop that
// reuses the number. When a partition is still in use (mounted), it returns an error and
// leaves the device attached, so that a later Detach can finish the job.
func (l *Loop) Detach(ctx context.Context) error {
	if l.detached {
		return nil
	}
	mine, err := l.boundToUs()
	if err != nil {
		return fmt.Errorf("detaching %s: %w", l.Path, err)
	}
	if !mine {
		l.detached = true
		return nil
	}
	if err := (Sys{}).RemovePartitions(ctx, l.Path); err != nil {
		return fmt.Errorf("detaching %s: %w", l.Path, err)
	}
	return l.unbind(ctx)
}

// unbind issues LOOP_CLR_FD and waits until the device is no longer bound to our file.
func (l *Loop) unbind(ctx context.Context) error {
	f, err := os.OpenFile(l.Path, os.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("detaching %s: %w", l.Path, err)
	}
	err = clearFD(int(f.Fd()))
	// The kernel finishes the detach when the last opener closes, so close before waiting.
	f.Close()
	if err != nil && !errors.Is(err, unix.ENXIO) {
		return fmt.Errorf("detaching %s: %w", l.Path, err)
	}
	wctx, cancel := context.WithTimeout(ctx, pollMax)
	defer cancel()
	for {
		mine, err := l.boundToUs()
		if err != nil {
			return fmt.Errorf("detaching %s: %w", l.Path, err)
		}
		if !mine {
			l.detached = true
			return nil
		}
		select {
		case <-wctx.Done():
			return fmt.Errorf("detaching %s: still bound to %s (is the device open or mounted elsewhere? the kernel detaches it on last close): %w", l.Path, l.File, wctx.Err())
		case <-time.After(pollEvery):
		}
	}
}

// boundToUs reports whether the loop device is still bound to the file this Loop attached,
// comparing device and inode numbers (paths can be renamed; numbers cannot be faked by
// another process's file).
func (l *Loop) boundToUs() (bool, error) {
	f, err := os.OpenFile(l.Path, os.O_RDONLY|unix.O_CLOEXEC, 0)
	if errors.Is(err, os.ErrNotExist) || errors.Is(err, unix.ENXIO) {
		return false, nil // the loop device itself was removed, or is being removed
	}
	if err != nil {
		return false, err
	}
	defer f.Close()
	info, err := unix.IoctlLoopGetStatus64(int(f.Fd()))
	if errors.Is(err, unix.ENXIO) {
		return false, nil // not bound to anything
	}
	if err != nil {
		return false, fmt.Errorf("LOOP_GET_STATUS64: %w", err)
	}
	return info.Device == l.fileDev && info.Inode == l.fileIno, nil
}
