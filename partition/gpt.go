package partition

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"

	diskfs "github.com/diskfs/go-diskfs"
	"github.com/diskfs/go-diskfs/backend/file"
	"github.com/diskfs/go-diskfs/partition/gpt"
)

// writeGPT writes d's table onto dev in one go: protective MBR, primary and backup
// headers and entry arrays. go-diskfs serialises all of it before the first write and
// validates nothing, so the table is checked with Validate first. The device is opened
// O_EXCL, which the kernel refuses while any partition of it is mounted.
func writeGPT(ctx context.Context, dev string, d *DiskLayout) error {
	return writeTable(ctx, dev, d, true)
}

// rewriteGPT is writeGPT for an update of a disk in use: the kept partitions stay where
// they are and may be mounted (the node's root), so the device is not opened O_EXCL,
// as sgdisk and parted open a disk whose partitions are in use.
func rewriteGPT(ctx context.Context, dev string, d *DiskLayout) error {
	return writeTable(ctx, dev, d, false)
}

// writeTable writes d's table onto dev, opened O_EXCL when exclusive.
func writeTable(ctx context.Context, dev string, d *DiskLayout, exclusive bool) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := d.Validate(); err != nil {
		return err
	}
	b, err := file.OpenFromPathWithExclusive(dev, false, exclusive)
	if err != nil {
		return fmt.Errorf("opening %s for the partition table: %w", dev, err)
	}
	dk, err := diskfs.OpenBackend(b, diskfs.WithSectorSize(diskfs.SectorSize(d.SectorSize)))
	if err != nil {
		b.Close()
		return fmt.Errorf("opening %s for the partition table: %w", dev, err)
	}
	defer dk.Close()
	if uint64(dk.Size) != d.SizeBytes || uint64(dk.LogicalBlocksize) != d.SectorSize {
		return fmt.Errorf("%s is now %d bytes with %d-byte sectors, but was planned as %d bytes with %d-byte sectors", dev, dk.Size, dk.LogicalBlocksize, d.SizeBytes, d.SectorSize)
	}
	t := &gpt.Table{
		LogicalSectorSize:  int(d.SectorSize),
		PhysicalSectorSize: int(max(d.SectorSize, uint64(dk.PhysicalBlocksize))),
		ProtectiveMBR:      true,
		GUID:               d.GUID,
	}
	for _, p := range d.Partitions {
		t.Partitions = append(t.Partitions, &gpt.Partition{
			Index: p.Number, Start: p.Start, End: p.End, Type: gpt.Type(p.Type), Name: p.Name, GUID: p.GUID, Attributes: p.Attributes,
		})
	}
	rw, err := dk.Backend.Writable()
	if err != nil {
		return fmt.Errorf("%s: %w", dev, err)
	}
	if err := t.Write(rw, dk.Size); err != nil {
		return fmt.Errorf("writing the partition table to %s: %w", dev, err)
	}
	// go-diskfs truncates the protective MBR's size field to 31 bits on disks of more
	// than 2^32 sectors; the UEFI spec says 0xFFFFFFFF there.
	if d.Sectors-1 > 0xFFFFFFFF {
		if _, err := rw.WriteAt([]byte{0xFF, 0xFF, 0xFF, 0xFF}, 446+12); err != nil {
			return fmt.Errorf("fixing the protective MBR of %s: %w", dev, err)
		}
	}
	if f, ok := rw.(interface{ Sync() error }); ok {
		if err := f.Sync(); err != nil {
			return fmt.Errorf("syncing %s: %w", dev, err)
		}
	}
	return nil
}

// ErrNoGPT is matched when a disk carries no readable GPT.
var ErrNoGPT = errors.New("no GPT")

// ExistingTable is a disk's current GPT, as read back for the verify policy.
type ExistingTable struct {
	SectorSize uint64
	GUID       string
	Partitions []ExistingPartition
}

// ExistingPartition is one entry of a disk's current GPT.
type ExistingPartition struct {
	Number     int
	Start, End uint64
	Type       string
	GUID       string
	Name       string
}

// ReadTable reads dev's current GPT, read-only.
func ReadTable(ctx context.Context, dev string, sectorSize uint64) (*ExistingTable, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	b, err := file.OpenFromPath(dev, true)
	if err != nil {
		return nil, fmt.Errorf("opening %s: %w", dev, err)
	}
	dk, err := diskfs.OpenBackend(b, diskfs.WithSectorSize(diskfs.SectorSize(sectorSize)))
	if err != nil {
		b.Close()
		return nil, fmt.Errorf("opening %s: %w", dev, err)
	}
	defer dk.Close()
	pt, err := dk.GetPartitionTable()
	if err != nil {
		return nil, fmt.Errorf("%s: %w: %w", dev, ErrNoGPT, err)
	}
	t, ok := pt.(*gpt.Table)
	if !ok {
		return nil, fmt.Errorf("%s has a %s partition table: %w", dev, pt.Type(), ErrNoGPT)
	}
	out := &ExistingTable{SectorSize: uint64(t.LogicalSectorSize), GUID: strings.ToUpper(t.GUID)}
	for i, p := range t.Partitions {
		if p == nil || p.Type == gpt.Unused {
			continue
		}
		out.Partitions = append(out.Partitions, ExistingPartition{
			Number: i + 1, Start: p.Start, End: p.End,
			Type: strings.ToUpper(string(p.Type)), GUID: strings.ToUpper(p.GUID), Name: p.Name,
		})
	}
	return out, nil
}

// zeroRange overwrites length bytes of dev at off with zeroes and syncs: old partition
// tables, RAID superblocks, LVM labels and filesystem signatures live in the first and
// last MiB of a disk or partition, and left there they make mdadm, LVM and blkid see
// ghosts of the previous layout.
func zeroRange(dev string, off, length uint64) error {
	f, err := os.OpenFile(dev, os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("opening %s to wipe it: %w", dev, err)
	}
	defer f.Close()
	buf := make([]byte, min(length, Align))
	for done := uint64(0); done < length; {
		n := min(uint64(len(buf)), length-done)
		if _, err := f.WriteAt(buf[:n], int64(off+done)); err != nil {
			return fmt.Errorf("wiping %s at byte %d: %w", dev, off+done, err)
		}
		done += n
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("syncing %s: %w", dev, err)
	}
	return f.Close()
}
