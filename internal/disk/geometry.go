// Package disk holds block-device facts and lifecycle: sizes and sector sizes, finding a
// disk by its spec id, loop devices for image files, locks and busy checks, partition
// re-reads, and mounts. It reads devices; it never writes partition tables or
// filesystems.
package disk

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"golang.org/x/sys/unix"
)

// ErrNotFound is matched by errors for a device or image path that does not exist.
var ErrNotFound = errors.New("no such device or file")

// Geometry is what the planner needs of a target.
type Geometry struct {
	Path       string
	SizeBytes  uint64
	SectorSize uint64
	// Block is true for a block device, false for a disk-image file.
	Block bool
}

// Probe reads the size and logical sector size of a block device or a disk-image file
// (a file has 512-byte sectors). It opens the path read-only and changes nothing.
func Probe(ctx context.Context, path string) (Geometry, error) {
	if err := ctx.Err(); err != nil {
		return Geometry{}, err
	}
	fi, err := os.Stat(path)
	if errors.Is(err, os.ErrNotExist) {
		return Geometry{}, fmt.Errorf("probing %s: %w", path, ErrNotFound)
	}
	if err != nil {
		return Geometry{}, fmt.Errorf("probing %s: %w", path, err)
	}
	g := Geometry{Path: path, SectorSize: 512}
	switch {
	case fi.Mode().IsRegular():
		g.SizeBytes = uint64(fi.Size())
		return g, nil
	case fi.Mode()&os.ModeDevice != 0 && fi.Mode()&os.ModeCharDevice == 0:
		g.Block = true
	default:
		return Geometry{}, fmt.Errorf("probing %s: not a block device or a regular file (mode %s)", path, fi.Mode())
	}
	f, err := os.Open(path)
	if err != nil {
		return Geometry{}, fmt.Errorf("probing %s: %w", path, err)
	}
	defer f.Close()
	// lseek(SEEK_END) gives a block device's size in bytes on every architecture, where
	// BLKGETSIZE64 through IoctlGetInt would be wrong on 32-bit ones.
	end, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		return Geometry{}, fmt.Errorf("probing %s: size: %w", path, err)
	}
	g.SizeBytes = uint64(end)
	lss, err := unix.IoctlGetInt(int(f.Fd()), unix.BLKSSZGET)
	if err != nil {
		return Geometry{}, fmt.Errorf("probing %s: logical sector size: %w", path, err)
	}
	g.SectorSize = uint64(lss)
	return g, nil
}
