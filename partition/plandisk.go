package partition

import (
	"slices"

	"github.com/provisioner/provisioner/schema"
)

// item is a partition waiting for its sectors.
type item struct {
	part    *Partition
	sectors uint64
	ptr     string
}

// planDisks lays out every disk of the spec, in the spec's order.
func (p *planner) planDisks() {
	first := true
	for i := range p.spec.Partitions {
		st := &p.spec.Partitions[i]
		if st.Type != schema.KindDisk {
			continue
		}
		// The first disk of the spec holds the ESP and multiboot partitions, even when
		// another disk's facts are missing.
		isFirst := first
		first = false
		ptr := schema.Ptr("/partitions", i)
		if facts, ok := p.lookup(st, ptr); ok {
			if d := p.planDisk(st, ptr, facts, isFirst); d != nil {
				p.l.Disks = append(p.l.Disks, d)
			}
		}
	}
}

// planDisk lays out one disk: its GPT geometry, the partitions the planner adds, the
// volumes' sizes, then where each partition goes. It returns nil, with the reasons
// recorded, when the disk cannot hold them.
func (p *planner) planDisk(st *schema.Storage, ptr string, facts Disk, first bool) *DiskLayout {
	dp := p.geometry(st, ptr, facts)
	if dp == nil {
		return nil
	}
	p.implicitPartitions(dp, first)
	p.sizeVolumes(dp)
	if !p.number(dp) || !p.sizeRemaining(dp) {
		return nil
	}
	dp.layOut()
	return dp.d
}

// diskPlan is one disk being laid out. Its partitions are kept in declaration order:
// the ones the planner adds (implicit), the volumes declared before "remaining" (head),
// "remaining" itself (rem, nil when there is none), and the volumes after it (tail).
type diskPlan struct {
	st  *schema.Storage
	ptr string
	d   *DiskLayout
	// start and end bound the aligned space a GPT leaves for partitions, end exclusive.
	start, end           uint64
	implicit, head, tail []*item
	rem                  *item
}

// avail is the space for partitions, in sectors.
func (dp *diskPlan) avail() uint64 {
	if dp.end > dp.start {
		return dp.end - dp.start
	}
	return 0
}

// implicitSectors is the space the partitions the planner adds take.
func (dp *diskPlan) implicitSectors() uint64 {
	var n uint64
	for _, it := range dp.implicit {
		n += it.sectors
	}
	return n
}

// all lists every partition in declaration order: implicit, head, remaining, tail.
func (dp *diskPlan) all() []*item {
	out := append(append([]*item{}, dp.implicit...), dp.head...)
	if dp.rem != nil {
		out = append(out, dp.rem)
	}
	return append(out, dp.tail...)
}

// geometry works out the disk's sectors and where its GPT leaves room for partitions,
// or records why the disk cannot hold a GPT.
func (p *planner) geometry(st *schema.Storage, ptr string, facts Disk) *diskPlan {
	lss := facts.SectorSize
	if lss < 512 || lss > Align || lss&(lss-1) != 0 {
		p.errf(ptr, "disk %s: logical sector size %d is not a power of two between 512 and 1 MiB", st.DiskID, lss)
		return nil
	}
	d := &DiskLayout{ID: st.DiskID, Source: ptr, Disk: facts, Alignment: Align / lss}
	d.Sectors = facts.SizeBytes / lss
	entries := (gptEntryArray + lss - 1) / lss
	d.FirstUsable = 2 + entries
	if d.Sectors < 2*(2+entries)+d.Alignment {
		p.errf(ptr, "disk %s is %s: too small for a GPT and one aligned MiB", st.DiskID, schema.HumanBytes(facts.SizeBytes))
		return nil
	}
	d.LastUsable = d.Sectors - 2 - entries
	d.GUID = p.ids.guid("disk:" + st.DiskID.String())
	return &diskPlan{st: st, ptr: ptr, d: d,
		start: alignUp(d.FirstUsable, d.Alignment),
		end:   alignDown(d.LastUsable+1, d.Alignment),
	}
}

// implicitPartitions adds the partitions the boot setup needs: BIOS boot on every disk
// (boot mode bios or both), and on the first disk the multiboot partition (two or more
// images at "/", or one that keeps the deploy ramdisk, whose grub directory must outlive a
// reload re-creating the image's /boot) and the ESP (uefi or both).
func (p *planner) implicitPartitions(dp *diskPlan, first bool) {
	add := func(role Role, name, typ string, size uint64) *Partition {
		part := &Partition{Role: role, Name: name, Type: typ, TypeName: typeName(typ)}
		dp.implicit = append(dp.implicit, &item{part: part, sectors: alignUp(ceilDiv(size, dp.d.SectorSize), dp.d.Alignment)})
		return part
	}
	mode := p.spec.Mode()
	if mode == schema.BootBIOS || mode == schema.BootBoth {
		part := add(RoleBIOSBoot, "BIOS boot", TypeBIOSBoot, BIOSBootSize)
		part.GUID = p.ids.guid("bios-boot:" + dp.st.DiskID.String())
	}
	if first && p.spec.Multiboot() {
		part := add(RoleMultiboot, "multiboot", TypeLinuxFS, sizeOr(p.spec.MultibootSize, DefaultMultibootSize))
		part.GUID = p.ids.guid("multiboot")
		part.FS = &Filesystem{Type: "ext4", UUID: p.ids.uuid("fs:multiboot"), Label: "multiboot", FstabEnabled: false}
		p.l.Multiboot = part.FS
	}
	if first && (mode == schema.BootUEFI || mode == schema.BootBoth) {
		part := add(RoleESP, "EFI system", TypeESP, sizeOr(p.spec.ESPSize, DefaultESPSize))
		part.GUID = p.ids.guid("esp")
		// mkfs.vfat picks the FAT size from the partition's size; the plan names it.
		mkfs := defaultESPMkfs
		if p.spec.ESPSize != nil {
			mkfs = sizedESPMkfs
		}
		part.FS = &Filesystem{Type: "vfat", UUID: p.ids.fsUUID("fs:esp", "vfat"), Label: "ESP", MkfsOptions: slices.Clone(mkfs), FstabEnabled: false}
		p.l.ESP = part.FS
	}
}

// sizeVolumes makes the partition of every volume with a size and gives the absolute and
// percentage ones their sectors; a percentage is of the space the implicit partitions
// leave. "remaining" is sized once everything else is (sizeRemaining).
func (p *planner) sizeVolumes(dp *diskPlan) {
	lss := dp.d.SectorSize
	var volSpace uint64
	if avail, implicit := dp.avail(), dp.implicitSectors(); avail > implicit {
		volSpace = avail - implicit
	}
	for j := range dp.st.Volumes {
		v := &dp.st.Volumes[j]
		vptr := schema.Ptr(dp.ptr, "volumes", j)
		if v.Type == schema.VolLVMMetaPool || v.Size == nil || isZero(v.Size.Q) {
			continue
		}
		it := &item{part: p.volumePartition(dp.d, v, vptr), ptr: vptr}
		switch v.Size.Q.Kind {
		case schema.Absolute:
			it.sectors = alignUp(ceilDiv(v.Size.Q.Bytes, lss), dp.d.Alignment)
		case schema.Percent:
			it.sectors = alignDown(v.Size.Q.PercentOf(volSpace), dp.d.Alignment)
			if it.sectors == 0 {
				p.errf(vptr+"/size", "%s of the %s disk %s leaves for volumes is less than 1 MiB", v.Size.Q, schema.HumanBytes(volSpace*lss), dp.st.DiskID)
			}
		case schema.Remaining:
			dp.rem = it
			continue
		}
		if dp.rem == nil {
			dp.head = append(dp.head, it)
		} else {
			dp.tail = append(dp.tail, it)
		}
	}
}

// number numbers the partitions in declaration order, so "the third volume is partition
// N" holds whatever the placement, and records a disk that needs more than a GPT holds.
func (p *planner) number(dp *diskPlan) bool {
	all := dp.all()
	if len(all) > maxPartitions {
		p.errf(dp.ptr, "disk %s would need %d partitions; a GPT holds %d", dp.st.DiskID, len(all), maxPartitions)
		return false
	}
	for n, it := range all {
		it.part.Number = n + 1
	}
	return true
}

// sizeRemaining checks that the sized partitions fit and gives "remaining" what they
// leave, which must be at least one aligned MiB.
func (p *planner) sizeRemaining(dp *diskPlan) bool {
	lss, avail, implicit := dp.d.SectorSize, dp.avail(), dp.implicitSectors()
	var need uint64
	for _, it := range dp.all() {
		if it != dp.rem {
			need += it.sectors
		}
	}
	if need > avail {
		p.errf(dp.ptr, "disk %s: the partitions need %s (volumes %s + %s the planner adds), but the disk has %s for partitions (%s less the GPT and 1 MiB alignment)",
			dp.st.DiskID, mib(need*lss), mib((need-implicit)*lss), mib(implicit*lss), mib(avail*lss), schema.HumanBytes(dp.d.SizeBytes))
		return false
	}
	if dp.rem != nil {
		dp.rem.sectors = alignDown(avail-need, dp.d.Alignment)
		if dp.rem.sectors == 0 {
			p.errf(dp.rem.ptr+"/size", "nothing is left for \"remaining\" on disk %s: the other partitions take %s of %s", dp.st.DiskID, mib(need*lss), mib(avail*lss))
			return false
		}
	}
	return true
}

// layOut places the partitions: the implicit ones and the head from the start of the
// disk on, "remaining" after them, the tail against the end of the disk; then it fills
// in the disk's table in number order.
func (dp *diskPlan) layOut() {
	cursor := dp.start
	for _, it := range dp.implicit {
		place(it, &cursor)
	}
	for _, it := range dp.head {
		place(it, &cursor)
	}
	if dp.rem != nil {
		place(dp.rem, &cursor)
	}
	back := dp.end
	for k := len(dp.tail) - 1; k >= 0; k-- {
		back -= dp.tail[k].sectors
		c := back
		place(dp.tail[k], &c)
	}
	all := dp.all()
	dp.d.Partitions = make([]*Partition, len(all))
	for n, it := range all {
		it.part.SizeBytes = it.part.Sectors() * dp.d.SectorSize
		dp.d.Partitions[n] = it.part
		if it.part.FS != nil {
			it.part.FS.Device = partDevice(dp.d, it.part.Number)
		}
	}
}

func place(it *item, cursor *uint64) {
	it.part.Start = *cursor
	it.part.End = *cursor + it.sectors - 1
	*cursor += it.sectors
}
