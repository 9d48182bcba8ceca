package partition

import (
	"fmt"
	"sort"
)

// Validate checks a disk's table the way the GPT writer will not: every partition lies
// in the usable area, starts aligned, overlaps no other, has a unique number in 1..128
// and a name GPT can store. The planner calls it on its own output, and the applier
// calls it again before writing, so no table that fails it ever reaches a disk.
func (d *DiskLayout) Validate() error {
	if d.Alignment == 0 || d.SectorSize == 0 {
		return fmt.Errorf("disk %s: alignment and sector size must be set", d.ID)
	}
	seen := map[int]bool{}
	parts := append([]*Partition(nil), d.Partitions...)
	for _, p := range parts {
		switch {
		case p.Number < 1 || p.Number > maxPartitions:
			return fmt.Errorf("disk %s: partition number %d is outside 1..%d", d.ID, p.Number, maxPartitions)
		case seen[p.Number]:
			return fmt.Errorf("disk %s: partition number %d is used twice", d.ID, p.Number)
		case p.End < p.Start:
			return fmt.Errorf("disk %s: partition %d ends (%d) before it starts (%d)", d.ID, p.Number, p.End, p.Start)
		case p.Start < d.FirstUsable || p.End > d.LastUsable:
			return fmt.Errorf("disk %s: partition %d (%d-%d) is outside the usable sectors %d-%d", d.ID, p.Number, p.Start, p.End, d.FirstUsable, d.LastUsable)
		case p.Start%d.Alignment != 0:
			return fmt.Errorf("disk %s: partition %d starts at sector %d, not a multiple of %d", d.ID, p.Number, p.Start, d.Alignment)
		case utf16Len(p.Name) > gptNameUnits:
			return fmt.Errorf("disk %s: partition %d name %q is longer than 36 characters (UTF-16 code units)", d.ID, p.Number, p.Name)
		case p.Type == "" || p.GUID == "":
			return fmt.Errorf("disk %s: partition %d has no type or GUID", d.ID, p.Number)
		}
		seen[p.Number] = true
	}
	sort.Slice(parts, func(i, j int) bool { return parts[i].Start < parts[j].Start })
	for i := 1; i < len(parts); i++ {
		if parts[i].Start <= parts[i-1].End {
			return fmt.Errorf("disk %s: partitions %d (%d-%d) and %d (%d-%d) overlap", d.ID,
				parts[i-1].Number, parts[i-1].Start, parts[i-1].End, parts[i].Number, parts[i].Start, parts[i].End)
		}
	}
	return nil
}
