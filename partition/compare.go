package partition

import (
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/provisioner/provisioner/schema"
)

// ErrMismatch is matched by errors saying the disks do not hold the planned layout,
// which the verify policy requires.
var ErrMismatch = errors.New("disks do not match the plan")

// mismatch reports the first difference found, naming where.
func mismatch(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrMismatch, fmt.Sprintf(format, args...))
}

// CompareTable checks that a disk's current GPT holds the planned partitions: the same
// numbers, each starting and ending within 1 MiB of the plan with the planned type. A
// table written by another tool (or by us with another sector rounding) still matches.
func CompareTable(d *DiskLayout, t *ExistingTable) error {
	if t == nil {
		return mismatch("disk %s has no GPT", d.ID)
	}
	if t.SectorSize != 0 && t.SectorSize != d.SectorSize {
		return mismatch("disk %s: table uses %d-byte sectors, the disk %d", d.ID, t.SectorSize, d.SectorSize)
	}
	have := map[int]ExistingPartition{}
	for _, p := range t.Partitions {
		have[p.Number] = p
	}
	tol := int64(d.Alignment) // 1 MiB in sectors
	for _, p := range d.Partitions {
		e, ok := have[p.Number]
		if !ok {
			return mismatch("disk %s: partition %d (%s) is missing", d.ID, p.Number, p.Name)
		}
		delete(have, p.Number)
		if abs(int64(e.Start)-int64(p.Start)) > tol || abs(int64(e.End)-int64(p.End)) > tol {
			return mismatch("disk %s: partition %d is at sectors %d-%d, the plan says %d-%d (±1 MiB)", d.ID, p.Number, e.Start, e.End, p.Start, p.End)
		}
		if !strings.EqualFold(e.Type, p.Type) {
			return mismatch("disk %s: partition %d has type %s, the plan says %s (%s)", d.ID, p.Number, e.Type, p.Type, p.TypeName)
		}
	}
	if len(have) > 0 {
		var extra []int
		for n := range have {
			extra = append(extra, n)
		}
		sort.Ints(extra)
		return mismatch("disk %s has partition %d, which the plan does not have", d.ID, extra[0])
	}
	return nil
}

// CompareLVs checks that each planned logical volume exists with its size within 1 MiB;
// existing maps "vg/lv" to bytes.
func CompareLVs(l *Layout, existing map[string]uint64) error {
	for _, vg := range l.VGs {
		for _, lv := range vg.LVs {
			key := vg.Name + "/" + lv.Name
			size, ok := existing[key]
			if !ok {
				return mismatch("logical volume %s is missing", key)
			}
			if abs(int64(size)-int64(lv.SizeBytes)) > int64(Align) {
				return mismatch("logical volume %s is %s, the plan says %s (±1 MiB)", key, schema.HumanBytes(size), schema.HumanBytes(lv.SizeBytes))
			}
		}
	}
	return nil
}

// Adopt makes the plan describe the disks it keeps: the partition and disk GUIDs of the
// existing tables, and the UUID and label of every filesystem with keep_data (kept maps
// those filesystems to what blkid found). Each image's fstab and root UUID follow, so a
// kept root keeps booting by its real UUID.
func (l *Layout) Adopt(tables map[string]*ExistingTable, kept map[*Filesystem]FSInfo) error {
	for _, d := range l.Disks {
		t := tables[d.ID.Value]
		if t == nil {
			continue
		}
		d.GUID = t.GUID
		for _, p := range d.Partitions {
			for _, e := range t.Partitions {
				if e.Number == p.Number {
					p.GUID, p.Start, p.End = e.GUID, e.Start, e.End
					p.SizeBytes = p.Sectors() * d.SectorSize
				}
			}
		}
	}
	for _, fs := range l.Filesystems() {
		if !fs.KeepData {
			continue
		}
		info, ok := kept[fs]
		switch {
		case !ok || info.Type == "":
			return mismatch("%s (%s) has keep_data but holds no filesystem", fs.Device, orDash(fs.Mount))
		case !sameFSType(info.Type, fs.Type):
			return mismatch("%s (%s) has keep_data and holds %s, the plan says %s", fs.Device, orDash(fs.Mount), info.Type, fs.Type)
		}
		fs.UUID, fs.Label = info.UUID, info.Label
	}
	l.renderImages()
	return nil
}

// sameFSType compares blkid's type with the plan's; ext4 created as ext4 reports "ext4",
// and FAT reports "vfat".
func sameFSType(blkid, planned string) bool {
	return blkid == planned
}

func abs(x int64) int64 {
	if x < 0 {
		return -x
	}
	return x
}
