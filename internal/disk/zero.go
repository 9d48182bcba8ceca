package disk

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"unsafe"

	"golang.org/x/sys/unix"
)

// WriteZeroesSupported reports whether the disk holding dev (a disk or a partition)
// zeroes ranges in the device itself (REQ_OP_WRITE_ZEROES: loop devices, NVMe, most
// SCSI). Only then is zeroing a whole partition cheap enough to do before writing a
// raw image, which lets the writer skip the image's all-zero blocks.
func (s Sys) WriteZeroesSupported(dev string) bool {
	name := filepath.Base(dev)
	if resolved, err := filepath.EvalSymlinks(dev); err == nil {
		name = filepath.Base(resolved)
	}
	dir := filepath.Join(s.sysRoot(), "class", "block", name)
	if _, err := os.Stat(filepath.Join(dir, "partition")); err == nil {
		// A partition's queue is its disk's. class/block/X is a symlink to X's directory
		// in the device tree, where a partition's sits in its disk's: the disk is found
		// from the resolved path (joining ".." to the link would give class/block).
		real, err := filepath.EvalSymlinks(dir)
		if err != nil {
			return false
		}
		dir = filepath.Dir(real)
	}
	b, err := os.ReadFile(filepath.Join(dir, "queue", "write_zeroes_max_bytes"))
	if err != nil {
		return false
	}
	n, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
	return err == nil && n > 0
}

// ZeroOut zeroes length bytes of the block device f at off with BLKZEROOUT; the kernel
// unmaps or writes zeroes as the device allows.
func ZeroOut(ctx context.Context, f *os.File, off, length uint64) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	r := [2]uint64{off, length}
	if _, _, errno := unix.Syscall(unix.SYS_IOCTL, f.Fd(), unix.BLKZEROOUT, uintptr(unsafe.Pointer(&r[0]))); errno != 0 {
		return fmt.Errorf("zeroing %s (%d bytes at %d): %w", f.Name(), length, off, errno)
	}
	return nil
}
