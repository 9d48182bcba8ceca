package partition

import "fmt"

// KindRAID is the kind of an md array's change (VolumeChange.Kind).
const KindRAID = "raid"

// raids compares the md arrays by name: the new plan's in order, then the ones only the
// record has. partitions must have run: an array one of whose members is destroyed or
// re-created loses its data.
func (d *differ) raids() {
	seen := map[string]bool{}
	for _, nr := range d.next.RAIDs {
		seen[nr.Name] = true
		for _, v := range d.raidChange(layoutRAID(d.oldL, nr.Name), nr) {
			d.keepData(v)
			d.add(v)
		}
	}
	for _, or := range d.oldL.RAIDs {
		if !seen[or.Name] {
			v := raidVolume(or, ActionDestroyed)
			v.Reason, v.FromBytes, v.DataLost = "not in the spec", or.MemberBytes, true
			d.keepData(v)
			d.add(v)
		}
	}
}

// raidChange compares the planned array nr with old, the recorded one of its name (nil
// for none).
func (d *differ) raidChange(old, nr *RAID) []*VolumeChange {
	v := raidVolume(nr, ActionCreated)
	v.ToBytes = nr.MemberBytes
	if old == nil {
		return []*VolumeChange{v}
	}
	if (old.FS == nil) != (nr.FS == nil) || old.FS != nil && old.FS.Mount != nr.FS.Mount {
		gone := raidVolume(old, ActionDestroyed)
		gone.Reason, gone.FromBytes, gone.DataLost = "holds another mount now", old.MemberBytes, true
		return []*VolumeChange{gone, v}
	}
	v.FromBytes = old.MemberBytes
	v.KeepData = v.KeepData || old.FS != nil && old.FS.KeepData
	switch why := d.memberLost(old); {
	case why != "":
		v.Action, v.Reason = ActionRecreated, why
	case fsType(old.FS) != fsType(nr.FS):
		v.Action, v.Reason = ActionRecreated, fmt.Sprintf("filesystem changes from %s to %s", orDash(fsType(old.FS)), orDash(fsType(nr.FS)))
	case nr.MemberBytes > old.MemberBytes+Align:
		v.Action = ActionGrown
	default:
		v.Action = ActionKept
	}
	v.DataLost = v.Action == ActionRecreated
	return []*VolumeChange{v}
}

// memberLost returns why the recorded array loses its data ("" when it does not): one
// of its members is destroyed or re-created.
func (d *differ) memberLost(r *RAID) string {
	for _, m := range r.Members {
		name := partName(m.Disk, m.Partition)
		if v := d.fates[name]; v != nil && v.DataLost {
			return fmt.Sprintf("its member %s is %s", name, v.Action)
		}
	}
	return ""
}

// raidVolume describes the array r with action a.
func raidVolume(r *RAID, a VolumeAction) *VolumeChange {
	v := &VolumeChange{Kind: KindRAID, Name: "md/" + r.Name, Action: a, FSType: fsType(r.FS)}
	if r.FS != nil {
		v.Mount, v.Images, v.KeepData = r.FS.Mount, r.FS.Images, r.FS.KeepData
	}
	return v
}

// layoutRAID returns l's md array name, or nil.
func layoutRAID(l *Layout, name string) *RAID {
	for _, r := range l.RAIDs {
		if r.Name == name {
			return r
		}
	}
	return nil
}
