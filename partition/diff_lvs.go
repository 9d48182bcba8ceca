package partition

import (
	"fmt"

	"github.com/provisioner/provisioner/schema"
)

// lvs compares every volume group's logical volumes: the new plan's groups in order,
// then the groups only the record has. partitions must have run: a group whose physical
// volume is destroyed or re-created loses every logical volume on it.
func (d *differ) lvs() {
	seen := map[string]bool{}
	for _, nvg := range d.next.VGs {
		seen[nvg.Name] = true
		d.vg(nvg.Name, layoutVG(d.oldL, nvg.Name), nvg)
	}
	for _, ovg := range d.oldL.VGs {
		if !seen[ovg.Name] {
			d.vg(ovg.Name, ovg, nil)
		}
	}
}

// vg compares one volume group: ovg as recorded (nil for a new group), nvg as planned
// (nil when the spec no longer has it).
func (d *differ) vg(name string, ovg, nvg *VG) {
	lost := d.pvLost(ovg)
	used := map[string]bool{}
	var changes []*VolumeChange
	if nvg != nil {
		for _, lv := range nvg.LVs {
			old := vgLV(ovg, lv.Name)
			used[lv.Name] = old != nil
			changes = append(changes, d.lvChange(name, old, lv, lost)...)
		}
	}
	if ovg != nil {
		for _, lv := range ovg.LVs {
			if !used[lv.Name] {
				why := reasonNotInSpec
				if lost != "" {
					why = lost
				}
				v := destroyedLV(name, lv, d.lvSize(name, lv), why)
				if lost == "" && d.orphan(lv.FS) {
					leaveAlone(v, lv.FS.Images)
				}
				changes = append(changes, v)
			}
		}
	}
	groupKeeps := ovg != nil && ovg.KeepData || nvg != nil && nvg.KeepData
	for _, v := range changes {
		v.KeepData = v.KeepData || groupKeeps
		d.keepData(v)
		d.add(v)
	}
	if lost == "" && ovg != nil && nvg != nil {
		d.checkVGSpace(name, ovg, nvg, changes)
	}
}

// pvLost returns why the recorded group ovg is lost ("" when it is not): one of its
// physical volumes is destroyed or re-created.
func (d *differ) pvLost(ovg *VG) string {
	if ovg == nil {
		return ""
	}
	for _, pv := range ovg.PVs {
		name := partName(pv.Disk, pv.Partition)
		if v := d.fates[name]; v != nil && v.DataLost {
			return fmt.Sprintf("its physical volume %s is %s", name, v.Action)
		}
	}
	return ""
}

// lvChange compares the planned lv with old, the recorded one of its name (nil for
// none). lost says why the group is lost, "" when it is not.
func (d *differ) lvChange(vg string, old, lv *LV, lost string) []*VolumeChange {
	v := &VolumeChange{Kind: KindLV, Name: vg + "/" + lv.Name, VG: vg, LV: lv.Name, ToBytes: lv.SizeBytes}
	describeLV(v, lv)
	v.KeepData = lv.FS != nil && lv.FS.KeepData
	if old == nil {
		v.Action = ActionCreated
		return []*VolumeChange{v}
	}
	size := d.lvSize(vg, old)
	if why := sameLVPurpose(old, lv); why != "" {
		v.Action = ActionCreated
		return []*VolumeChange{destroyedLV(vg, old, size, why), v}
	}
	v.FromBytes = size
	v.KeepData = v.KeepData || old.FS != nil && old.FS.KeepData
	switch {
	case lost != "":
		v.Action, v.Reason = ActionRecreated, lost
	case fsType(old.FS) != fsType(lv.FS):
		v.Action, v.Reason = ActionRecreated, fmt.Sprintf("filesystem changes from %s to %s", orDash(fsType(old.FS)), orDash(fsType(lv.FS)))
	case lv.SizeBytes+Align < size:
		v.Action, v.Reason = ActionRecreated, fmt.Sprintf("shrunk from %s to %s", schema.HumanBytes(size), schema.HumanBytes(lv.SizeBytes))
	case lv.SizeBytes > size+Align:
		v.Action = ActionGrown
	default:
		v.Action, v.ToBytes = ActionKept, size
	}
	v.DataLost = v.Action == ActionRecreated
	return []*VolumeChange{v}
}

// lvSize returns the logical volume's size now, as probed; the recorded size when the
// probe did not report it (the volume group is not active), with a refusal: the disks no
// longer hold what the record says.
func (d *differ) lvSize(vg string, lv *LV) uint64 {
	if size, ok := d.cur.LVs[vg+"/"+lv.Name]; ok {
		return size
	}
	d.refuse(vg+"/"+lv.Name, "the record has it (%s), the disks have no such logical volume", schema.HumanBytes(lv.SizeBytes))
	return lv.SizeBytes
}

// sameLVPurpose returns why the recorded old and the planned lv hold different things
// ("" when they hold the same): a filesystem added or removed, or another mount.
func sameLVPurpose(old, lv *LV) string {
	switch {
	case (old.FS == nil) != (lv.FS == nil):
		return "filesystem added or removed"
	case old.FS != nil && old.FS.Mount != lv.FS.Mount:
		return fmt.Sprintf("mount changes from %s to %s", orDash(old.FS.Mount), orDash(lv.FS.Mount))
	}
	return ""
}

// describeLV fills in what lv holds.
func describeLV(v *VolumeChange, lv *LV) {
	if lv.FS != nil {
		v.Mount, v.FSType, v.Images = lv.FS.Mount, lv.FS.Type, lv.FS.Images
	}
}

// destroyedLV describes the logical volume lv of size bytes, which the update destroys.
func destroyedLV(vg string, lv *LV, size uint64, why string) *VolumeChange {
	v := &VolumeChange{Kind: KindLV, Name: vg + "/" + lv.Name, VG: vg, LV: lv.Name, Action: ActionDestroyed,
		Reason: why, FromBytes: size, DataLost: true}
	describeLV(v, lv)
	v.KeepData = lv.FS != nil && lv.FS.KeepData
	return v
}

// checkVGSpace refuses logical volumes created, re-created or grown beyond what the
// group has free: its free space now, what destroyed and re-created volumes free, and
// what grown physical volumes add.
func (d *differ) checkVGSpace(name string, ovg, nvg *VG, changes []*VolumeChange) {
	var need, freed uint64
	for _, v := range changes {
		switch v.Action {
		case ActionCreated:
			need += v.ToBytes
		case ActionRecreated:
			need += v.ToBytes
			freed += v.FromBytes
		case ActionGrown:
			need += v.ToBytes - v.FromBytes
		case ActionDestroyed:
			freed += v.FromBytes
		}
	}
	free := d.cur.VGFree[name]
	var added uint64
	if nvg.Extents > ovg.Extents && nvg.ExtentSize == ovg.ExtentSize {
		added = (nvg.Extents - ovg.Extents) * nvg.ExtentSize
	}
	if have := free + freed + added; need > have {
		d.refuse("vg "+name, "the created and grown logical volumes need %s, the group has %s (%s free now, %s freed, %s from grown physical volumes)",
			schema.HumanBytes(need), schema.HumanBytes(have), schema.HumanBytes(free), schema.HumanBytes(freed), schema.HumanBytes(added))
	}
}

// layoutVG returns l's volume group name, or nil.
func layoutVG(l *Layout, name string) *VG {
	for _, vg := range l.VGs {
		if vg.Name == name {
			return vg
		}
	}
	return nil
}

// vgLV returns the group's logical volume name, or nil (also for a nil group).
func vgLV(vg *VG, name string) *LV {
	if vg == nil {
		return nil
	}
	for _, lv := range vg.LVs {
		if lv.Name == name {
			return lv
		}
	}
	return nil
}
