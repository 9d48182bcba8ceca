package deploy

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/provisioner/provisioner/internal/disk"
	"github.com/provisioner/provisioner/internal/run"
	"github.com/provisioner/provisioner/partition"
)

// rawBlock is the unit the raw writer reads; on a zeroed device it writes only the
// runs of rawSector-sized pieces that are not all zero.
const (
	rawBlock  = 1 << 20
	rawSector = 4096 // the block size of most filesystem images, and of ext4's default
)

// RawResult says what writing a raw image did.
type RawResult struct {
	Written, Skipped int64 // bytes written, and all-zero bytes skipped
	// GrowAfterMount is set for xfs, which only grows while mounted (xfs_growfs).
	GrowAfterMount bool
}

// WriteRaw copies a raw filesystem image onto dev, the partition (or lv, or md array)
// planned for fs, then gives the filesystem the planned UUID and label and grows it to
// the device. All-zero blocks are skipped only when the device was first zeroed by the
// kernel (write-zeroes support): a filesystem may rely on blocks it left zero, and a
// partition's old contents are not zero. An image that cannot be read, is empty, is not
// the planned filesystem or is larger than dev is an image error (ErrImage); a device
// that fails, fills up or is read-only while written is a write failure (ErrWrite).
func WriteRaw(ctx context.Context, r run.Runner, sys disk.Sys, src io.Reader, dev string, fs *partition.Filesystem) (RawResult, error) {
	res, err := copyRaw(ctx, sys, src, dev, fs)
	if err != nil {
		return res, classify(ctx, deviceFault, err)
	}
	return res, adoptIdentity(ctx, r, dev, fs, &res)
}

// copyRaw writes the image's bytes; WriteRaw classifies its device errors.
func copyRaw(ctx context.Context, sys disk.Sys, src io.Reader, dev string, fs *partition.Filesystem) (RawResult, error) {
	var res RawResult
	if fs == nil {
		return res, fmt.Errorf("raw image for %s: the plan has no filesystem there", dev)
	}
	if fs.Type != "xfs" && fs.Type != "ext2" && fs.Type != "ext3" && fs.Type != "ext4" {
		return res, fmt.Errorf("raw image for %s: the plan makes %s there; raw images must be ext2/3/4 or xfs", dev, fs.Type)
	}
	f, err := os.OpenFile(dev, os.O_WRONLY|os.O_EXCL, 0)
	if err != nil {
		return res, fmt.Errorf("opening %s for the raw image: %w", dev, err)
	}
	defer f.Close()
	size, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		return res, fmt.Errorf("sizing %s: %w", dev, err)
	}
	skipZero := false
	if sys.WriteZeroesSupported(dev) {
		if err := disk.ZeroOut(ctx, f, 0, uint64(size)); err == nil {
			skipZero = true
		}
	}

	buf := make([]byte, rawBlock)
	var off int64
	for {
		if err := ctx.Err(); err != nil {
			return res, err
		}
		// fill, unlike io.ReadFull, keeps an io.ErrUnexpectedEOF of src (a cut stream)
		// apart from the short last block of a whole one.
		n, rerr := fill(src, buf)
		if n > 0 {
			if off == 0 {
				if err := checkRawMagic(buf[:n], fs.Type); err != nil {
					return res, blame(ErrImage, fmt.Errorf("raw image for %s: %w", dev, err))
				}
			}
			if off+int64(n) > size {
				return res, blame(ErrImage, fmt.Errorf("raw image for %s is larger than the device (%d bytes)", dev, size))
			}
			if err := writeBlock(f, buf[:n], off, skipZero, &res); err != nil {
				return res, fmt.Errorf("writing the raw image to %s %w", dev, err)
			}
			off += int64(n)
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			return res, classify(ctx, streamFault, fmt.Errorf("reading the raw image for %s: %w", dev, rerr))
		}
	}
	if off == 0 {
		return res, blame(ErrImage, fmt.Errorf("raw image for %s is empty", dev))
	}
	if err := f.Sync(); err != nil {
		return res, fmt.Errorf("syncing %s: %w", dev, err)
	}
	if err := f.Close(); err != nil {
		return res, fmt.Errorf("closing %s: %w", dev, err)
	}
	return res, nil
}

// writeBlock writes b at off; when skipZero (the device reads as zeros) it writes only
// the runs of rawSector-sized pieces that are not all zero, so that a mostly empty
// filesystem image costs the writes of its used blocks, counting the rest as skipped.
func writeBlock(f *os.File, b []byte, off int64, skipZero bool, res *RawResult) error {
	if !skipZero {
		if _, err := f.WriteAt(b, off); err != nil {
			return fmt.Errorf("at byte %d: %w", off, err)
		}
		res.Written += int64(len(b))
		return nil
	}
	written := 0
	for start := 0; start < len(b); {
		// Skip the zero pieces, then take the run of non-zero ones that follows.
		for start < len(b) && allZero(b[start:min(start+rawSector, len(b))]) {
			start = min(start+rawSector, len(b))
		}
		end := start
		for end < len(b) && !allZero(b[end:min(end+rawSector, len(b))]) {
			end = min(end+rawSector, len(b))
		}
		if end > start {
			if _, err := f.WriteAt(b[start:end], off+int64(start)); err != nil {
				return fmt.Errorf("at byte %d: %w", off+int64(start), err)
			}
			written += end - start
		}
		start = end
	}
	res.Written += int64(written)
	res.Skipped += int64(len(b) - written)
	return nil
}

// adoptIdentity gives the written filesystem the plan's UUID and label (fstab and the
// boot menu use them) and grows it to the device.
func adoptIdentity(ctx context.Context, r run.Runner, dev string, fs *partition.Filesystem, res *RawResult) error {
	if fs.Type == "xfs" {
		argv := []string{"xfs_admin", "-U", fs.UUID}
		if fs.Label != "" {
			argv = append(argv, "-L", fs.Label)
		}
		if _, err := r.Run(ctx, run.Cmd{Argv: append(argv, dev)}); err != nil {
			return fmt.Errorf("setting the UUID of %s: %w", dev, err)
		}
		res.GrowAfterMount = true
		return nil
	}
	// tune2fs -U needs a freshly checked filesystem; e2fsck exits 1 when it fixed
	// something, which is success here.
	if _, err := r.Run(ctx, run.Cmd{Argv: []string{"e2fsck", "-f", "-y", dev}}); err != nil {
		var rerr *run.Error
		if !errors.As(err, &rerr) || rerr.ExitCode != 1 {
			return fmt.Errorf("checking %s: %w", dev, err)
		}
	}
	argv := []string{"tune2fs", "-U", fs.UUID}
	if fs.Label != "" {
		argv = append(argv, "-L", fs.Label)
	}
	if _, err := r.Run(ctx, run.Cmd{Argv: append(argv, dev)}); err != nil {
		return fmt.Errorf("setting the UUID of %s: %w", dev, err)
	}
	if _, err := r.Run(ctx, run.Cmd{Argv: []string{"resize2fs", dev}}); err != nil {
		return fmt.Errorf("growing %s: %w", dev, err)
	}
	return nil
}

// checkRawMagic refuses a raw image whose first block is not the planned filesystem:
// writing an xfs image where the plan (and so fstab) says ext4 would not boot.
func checkRawMagic(first []byte, planned string) error {
	found := "unknown data"
	switch {
	case len(first) >= 4 && bytes.Equal(first[:4], []byte("XFSB")):
		found = "xfs"
	case len(first) >= 1082 && binary.LittleEndian.Uint16(first[1080:1082]) == 0xEF53:
		found = "ext2/3/4"
	}
	switch {
	case planned == "xfs" && found == "xfs", planned != "xfs" && found == "ext2/3/4":
		return nil
	}
	return fmt.Errorf("the image holds %s, the plan says %s", found, planned)
}

func allZero(b []byte) bool {
	for len(b) >= 8 {
		if binary.NativeEndian.Uint64(b) != 0 {
			return false
		}
		b = b[8:]
	}
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}
