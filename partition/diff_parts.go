package partition

import (
	"fmt"
	"sort"
	"strings"

	"github.com/provisioner/provisioner/schema"
)

// before is one partition as it is now: its place from the disk's table, what it holds
// from the record (rec is nil for a partition the record does not know).
type before struct {
	Number     int
	Start, End uint64
	Type       string
	rec        *Partition
}

// partitions compares every disk's partitions, disk by disk: the new plan's disks in
// order, then the disks only the record has.
func (d *differ) partitions() error {
	seen := map[string]bool{}
	for _, nd := range d.next.Disks {
		seen[nd.ID.Value] = true
		if err := d.disk(nd.ID.Value, nd); err != nil {
			return err
		}
	}
	for _, od := range d.oldL.Disks {
		if !seen[od.ID.Value] {
			if err := d.disk(od.ID.Value, nil); err != nil {
				return err
			}
		}
	}
	return nil
}

// disk compares one disk's partitions: nd is the new plan's disk, nil when the spec no
// longer names it (then every partition on it is destroyed).
func (d *differ) disk(id string, nd *DiskLayout) error {
	cd := d.cur.Disks[id]
	if cd == nil {
		return fmt.Errorf("diff: disk %s: its current state was not probed", id)
	}
	if t := cd.Table; t != nil && nd != nil && t.SectorSize != 0 && t.SectorSize != nd.SectorSize {
		d.refuse(id, "its table uses %d-byte sectors, the plan %d-byte ones", t.SectorSize, nd.SectorSize)
		return nil
	}
	od := layoutDisk(d.oldL, id)
	now := d.beforeParts(id, od, cd)
	used := map[int]bool{}
	var changes []*VolumeChange
	if nd != nil {
		for _, np := range nd.Partitions {
			b := now[np.Number]
			used[np.Number] = b != nil
			changes = append(changes, d.partChange(id, nd, b, np)...)
		}
	}
	for _, n := range sortedNumbers(now) {
		if !used[n] {
			v := destroyedPart(id, now[n], cd.SectorSize, reasonNotInSpec)
			if rec := now[n].rec; rec != nil && d.orphan(rec.FS) {
				leaveAlone(v, rec.FS.Images)
			}
			changes = append(changes, v)
		}
	}
	for _, v := range changes {
		d.keepData(v)
		d.add(v)
	}
	if nd != nil {
		d.checkGrowth(id, nd, now, changes)
	}
	d.pictures = append(d.pictures, picture(id, cd, nd, now, changes))
	return nil
}

// beforeParts returns the partitions on the disk now, by number: the table's, each with
// the record's partition of that number. A partition the record has and the table lacks
// is refused: the disks no longer hold what was deployed.
func (d *differ) beforeParts(id string, od *DiskLayout, cd *CurrentDisk) map[int]*before {
	now := map[int]*before{}
	if cd.Table != nil {
		for _, e := range cd.Table.Partitions {
			now[e.Number] = &before{Number: e.Number, Start: e.Start, End: e.End, Type: e.Type}
		}
	}
	if od == nil {
		return now
	}
	for _, p := range od.Partitions {
		b := now[p.Number]
		if b == nil {
			d.refuse(partName(id, p.Number), "the record has it (%s, %s), the disk has no partition %d", p.Role, schema.HumanBytes(p.SizeBytes), p.Number)
			continue
		}
		b.rec = p
	}
	return now
}

// partChange compares the partition np of the new plan with b, the partition of its
// number now (nil for none). A partition holding something else now is destroyed and
// np created in its place.
func (d *differ) partChange(id string, nd *DiskLayout, b *before, np *Partition) []*VolumeChange {
	ss := nd.SectorSize
	v := newPartChange(id, np, ss)
	if b == nil {
		v.Action = ActionCreated
		return []*VolumeChange{v}
	}
	if why := samePurpose(b.rec, np); why != "" {
		v.Action = ActionCreated
		return []*VolumeChange{destroyedPart(id, b, ss, why), v}
	}
	v.FromBytes, v.FromStart = (b.End-b.Start+1)*ss, b.Start
	v.KeepData = v.KeepData || keeps(b.rec)
	tol := nd.Alignment
	oldFS, newFS := fsType(b.rec.FS), fsType(np.FS)
	switch {
	case !strings.EqualFold(b.Type, np.Type):
		v.Action, v.Reason = ActionRecreated, fmt.Sprintf("type changes from %s to %s", b.Type, np.TypeName)
	case oldFS != newFS:
		v.Action, v.Reason = ActionRecreated, fmt.Sprintf("filesystem changes from %s to %s", orDash(oldFS), orDash(newFS))
	case absDiff(b.Start, np.Start) > tol:
		v.Action, v.Reason = ActionRecreated, fmt.Sprintf("moved from sector %d to %d", b.Start, np.Start)
	case np.End+tol < b.End:
		v.Action, v.Reason = ActionRecreated, fmt.Sprintf("shrunk from %s to %s", schema.HumanBytes(v.FromBytes), schema.HumanBytes(v.ToBytes))
	case np.End > b.End+tol:
		v.Action = ActionGrown
	default:
		v.Action, v.ToBytes, v.ToStart = ActionKept, v.FromBytes, b.Start
	}
	v.DataLost = v.Action == ActionRecreated
	return []*VolumeChange{v}
}

// newPartChange describes the new plan's partition np, not yet compared.
func newPartChange(id string, np *Partition, ss uint64) *VolumeChange {
	v := &VolumeChange{Kind: KindPartition, Name: partName(id, np.Number), Disk: id, Number: np.Number,
		Role: np.Role, ToBytes: np.Sectors() * ss, ToStart: np.Start, KeepData: keeps(np)}
	describePart(v, np)
	return v
}

// describePart fills in what p holds.
func describePart(v *VolumeChange, p *Partition) {
	v.Role = p.Role
	switch {
	case p.FS != nil:
		v.Mount, v.FSType, v.Images = p.FS.Mount, p.FS.Type, p.FS.Images
	case p.VG != "":
		v.FSType = "pv:" + p.VG
	case p.RAID != "":
		v.FSType = "raid:" + p.RAID
	}
}

// destroyedPart describes the partition b, which the update destroys.
func destroyedPart(id string, b *before, ss uint64, why string) *VolumeChange {
	v := &VolumeChange{Kind: KindPartition, Name: partName(id, b.Number), Disk: id, Number: b.Number,
		Action: ActionDestroyed, Reason: why, FromBytes: (b.End - b.Start + 1) * ss, FromStart: b.Start, DataLost: true}
	if b.rec == nil {
		v.Role = "unknown"
		v.Reason = "not in the record; " + why
		return v
	}
	describePart(v, b.rec)
	v.KeepData = keeps(b.rec)
	return v
}

// samePurpose returns why the recorded partition old and the planned np hold different
// things ("" when they hold the same): another role, volume group, md array or mount.
func samePurpose(old, np *Partition) string {
	switch {
	case old == nil:
		return "not in the record"
	case old.Role != np.Role:
		return fmt.Sprintf("role changes from %s to %s", old.Role, np.Role)
	case old.VG != np.VG:
		return fmt.Sprintf("volume group changes from %s to %s", orDash(old.VG), orDash(np.VG))
	case old.RAID != np.RAID:
		return fmt.Sprintf("md array changes from %s to %s", orDash(old.RAID), orDash(np.RAID))
	case (old.FS == nil) != (np.FS == nil):
		return "filesystem added or removed"
	case old.FS != nil && old.FS.Mount != np.FS.Mount:
		return fmt.Sprintf("mount changes from %s to %s", orDash(old.FS.Mount), orDash(np.FS.Mount))
	}
	return ""
}

// checkGrowth refuses a partition grown into space that is not free now: every sector
// it gains must lie outside every partition on the disk now, including one the update
// destroys (a grow never depends on a destruction; the planner keeps it within the
// disk's usable space).
func (d *differ) checkGrowth(id string, nd *DiskLayout, now map[int]*before, changes []*VolumeChange) {
	for _, v := range changes {
		if v.Action != ActionGrown {
			continue
		}
		from := v.FromStart + v.FromBytes/nd.SectorSize
		to := v.ToStart + v.ToBytes/nd.SectorSize - 1
		for _, n := range sortedNumbers(now) {
			b := now[n]
			if n == v.Number || b.End < from || b.Start > to {
				continue
			}
			d.refuse(v.Name, "grows from %s to %s into sectors %d-%d, but partition %d (%s) holds sectors %d-%d: only free space can be grown into",
				schema.HumanBytes(v.FromBytes), schema.HumanBytes(v.ToBytes), from, to, n, schema.HumanBytes((b.End-b.Start+1)*nd.SectorSize), b.Start, b.End)
		}
	}
}

// keepData refuses a keep_data volume the update would destroy or re-create.
func (d *differ) keepData(v *VolumeChange) {
	if !v.KeepData || !v.DataLost {
		return
	}
	why := v.Reason
	if why == "" {
		why = string(v.Action)
	}
	d.refuse(v.Name, "has keep_data and would be %s (%s, %s): its data would be lost", v.Action, why, schema.HumanBytes(max(v.FromBytes, v.ToBytes)))
}

// keeps reports whether the partition or its filesystem has keep_data.
func keeps(p *Partition) bool {
	return p != nil && (p.KeepData || p.FS != nil && p.FS.KeepData)
}

// fsType returns the filesystem's type, "" for none.
func fsType(fs *Filesystem) string {
	if fs == nil {
		return ""
	}
	return fs.Type
}

// layoutDisk returns l's disk with id value id, or nil.
func layoutDisk(l *Layout, id string) *DiskLayout {
	for _, d := range l.Disks {
		if d.ID.Value == id {
			return d
		}
	}
	return nil
}

// partName names a partition "vda#3".
func partName(disk string, n int) string { return fmt.Sprintf("%s#%d", disk, n) }

// sortedNumbers returns the map's partition numbers in order.
func sortedNumbers(m map[int]*before) []int {
	out := make([]int, 0, len(m))
	for n := range m {
		out = append(out, n)
	}
	sort.Ints(out)
	return out
}

// absDiff returns |a-b|.
func absDiff(a, b uint64) uint64 {
	if a > b {
		return a - b
	}
	return b - a
}
