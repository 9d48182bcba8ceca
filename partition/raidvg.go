package partition

import (
	"fmt"

	"github.com/provisioner/provisioner/schema"
)

// LVM layout constants. They match lvm2's defaults so the planned extents are what
// vgcreate will report; the applier passes them explicitly all the same.
const (
	ExtentSize = 4 * schema.MiB
	// lvmLabelArea is the label and header space before the first metadata area.
	lvmLabelArea = 4 * schema.KiB
	// defaultMDA is lvm2's default metadata area (pvmetadatasize 255 sectors, rounded).
	defaultMDA = 1020 * schema.KiB
)

// planRAIDs groups raid members (already placed on their disks) into md raid1 arrays,
// in the order their first member appears.
func (p *planner) planRAIDs() {
	byKey := map[string]*RAID{}
	used := map[string]bool{}
	var pending []*RAID
	for _, d := range p.l.Disks {
		for _, part := range d.Partitions {
			v, ok := p.raidOf[part]
			if !ok {
				continue
			}
			key := schema.RAIDKey(v)
			r := byKey[key]
			if r == nil {
				r = &RAID{Level: 1, UUID: p.ids.uuid("raid:" + key), FS: p.filesystem(v, part.Source)}
				byKey[key] = r
				pending = append(pending, r)
				p.l.RAIDs = append(p.l.RAIDs, r)
			}
			if r.Name == "" && v.Name != "" {
				r.Name = schema.RAIDName(v)
				used[r.Name] = true
			}
			r.Members = append(r.Members, PartRef{Disk: d.ID.Value, Partition: part.Number})
			r.Sources = append(r.Sources, part.Source)
			if r.MemberBytes == 0 || part.SizeBytes < r.MemberBytes {
				r.MemberBytes = part.SizeBytes
			}
		}
	}
	next := 0
	for _, r := range pending {
		for r.Name == "" {
			if n := fmt.Sprintf("md%d", next); !used[n] {
				r.Name, used[n] = n, true
			}
			next++
		}
		if r.FS != nil {
			r.FS.Device = r.Device()
		}
		for _, m := range r.Members {
			p.partition(m).RAID = r.Name
		}
	}
}

func (p *planner) partition(ref PartRef) *Partition {
	for _, d := range p.l.Disks {
		if d.ID.Value == ref.Disk {
			return d.Partitions[ref.Partition-1]
		}
	}
	return nil
}

// planVGs sizes each volume group from its pvs and lays out its lvs. A vg may be
// declared before the disks holding its pvs: pvs were collected while planning disks.
func (p *planner) planVGs() {
	for i := range p.spec.Partitions {
		st := &p.spec.Partitions[i]
		if st.Type != schema.KindVG {
			continue
		}
		ptr := schema.Ptr("/partitions", i)
		vg := &VG{Name: st.VGName, Source: ptr, ExtentSize: ExtentSize, KeepData: st.KeepData}
		for _, pv := range p.pvOf {
			if pv.vol.VG != vg.Name {
				continue
			}
			vg.PVs = append(vg.PVs, planPV(pv))
		}
		if len(vg.PVs) == 0 {
			// Its disks failed to plan; their errors say why.
			continue
		}
		for _, pv := range vg.PVs {
			vg.Extents += pv.Extents
		}
		p.planLVs(st, vg, ptr)
		p.l.VGs = append(p.l.VGs, vg)
	}
}

// planPV works out where a pv's extents start and how many it has. lvm2 keeps one
// metadata area after the label: lvm2's default size without lvm_meta_size, that size
// with it (pvcreate --metadatasize, as Bareon's Ironic driver ran it), so every pv has
// lvm_meta_size less space. pvcreate aligns the data start to 1 MiB (--dataalignment)
// after the label and the area; nothing is kept at the end.
func planPV(pv pvVolume) *PV {
	out := &PV{
		PartRef:        PartRef{Disk: pv.disk.ID.Value, Partition: pv.part.Number},
		SizeBytes:      pv.part.SizeBytes,
		MetadataBytes:  defaultMDA,
		MetadataCopies: 1,
		Source:         pv.part.Source,
	}
	if m := pv.vol.LVMMetaSize; m != nil && m.Q.Kind == schema.Absolute && m.Q.Bytes > 0 {
		out.MetadataBytes = m.Q.Bytes
	}
	out.DataStart = alignUp(lvmLabelArea+out.MetadataBytes, Align)
	if out.SizeBytes > out.DataStart {
		out.Extents = (out.SizeBytes - out.DataStart) / ExtentSize
	}
	return out
}

func (p *planner) planLVs(st *schema.Storage, vg *VG, ptr string) {
	var used uint64
	var rem *LV
	for j := range st.Volumes {
		v := &st.Volumes[j]
		vptr := schema.Ptr(ptr, "volumes", j)
		if v.Size == nil || isZero(v.Size.Q) {
			continue
		}
		lv := &LV{Name: v.Name, Source: vptr, FS: p.filesystem(v, vptr)}
		if lv.FS != nil && st.KeepData {
			// keep_data on a vg keeps every filesystem in it.
			lv.FS.KeepData = true
		}
		switch v.Size.Q.Kind {
		case schema.Absolute:
			lv.Extents = ceilDiv(v.Size.Q.Bytes, ExtentSize)
		case schema.Percent:
			lv.Extents = v.Size.Q.PercentOf(vg.Extents)
			if lv.Extents == 0 {
				p.errf(vptr+"/size", "%s of volume group %q (%s) is less than one %s extent", v.Size.Q, vg.Name, schema.HumanBytes(vg.Extents*ExtentSize), schema.HumanBytes(ExtentSize))
			}
		case schema.Remaining:
			rem = lv
		}
		used += lv.Extents
		vg.LVs = append(vg.LVs, lv)
	}
	if used > vg.Extents {
		p.errf(ptr, "volume group %q: the lvs need %s, but its %d pv(s) provide %s (%d extents of %s, after LVM metadata)",
			vg.Name, mib(used*ExtentSize), len(vg.PVs), mib(vg.Extents*ExtentSize), vg.Extents, schema.HumanBytes(ExtentSize))
		return
	}
	if rem != nil {
		rem.Extents = vg.Extents - used
		if rem.Extents == 0 {
			p.errf(rem.Source+"/size", "nothing is left for \"remaining\" in volume group %q: the other lvs take all %s", vg.Name, mib(vg.Extents*ExtentSize))
			return
		}
		used = vg.Extents
	}
	vg.FreeExtents = vg.Extents - used
	for _, lv := range vg.LVs {
		lv.SizeBytes = lv.Extents * ExtentSize
		if lv.FS != nil {
			lv.FS.Device = "/dev/" + vg.Name + "/" + lv.Name
		}
	}
}
