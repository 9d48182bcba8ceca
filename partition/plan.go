package partition

import (
	"fmt"
	"strings"
	"unicode/utf16"

	"github.com/provisioner/provisioner/schema"
)

// Sizes of the partitions the planner adds, and layout constants.
const (
	BIOSBootSize         = 1 * schema.MiB
	DefaultESPSize       = 256 * schema.MiB
	DefaultMultibootSize = 100 * schema.MiB
	// Align is the partition alignment: 1 MiB suits every SSD erase block, 4Kn and RAID
	// stripe we know of, and is what parted, sgdisk and the installers use.
	Align = 1 * schema.MiB
	// gptEntryArray is the size of a 128-entry GPT partition array.
	gptEntryArray = 128 * 128
	maxPartitions = 128
)

// Plan lays out spec on disks, keyed by the disk id value of the spec ("vda"). A disk
// missing from disks is simulated from the spec's "size" with 512-byte sectors. seed
// makes every generated GUID and UUID reproducible; callers pick a random one when the
// user gives none. Plan does no I/O.
func Plan(spec *schema.Spec, disks map[string]Disk, seed string) (*Layout, error) {
	p := &planner{
		spec:   spec,
		disks:  disks,
		ids:    ids{seed: seed},
		roots:  spec.RootImages(),
		raidOf: map[*Partition]*schema.Volume{},
		l: &Layout{
			Seed:     seed,
			BootMode: spec.Mode(),
			Policy:   spec.Policy(),
		},
	}
	p.planDisks()
	p.planRAIDs()
	p.planVGs()
	if len(p.errs) > 0 {
		return nil, &LayoutError{Problems: p.errs}
	}
	p.planImages()
	for _, d := range p.l.Disks {
		if err := d.Validate(); err != nil {
			// The planner broke its own invariants: a bug, never the user's fault.
			return nil, fmt.Errorf("planner produced an invalid table: %w", err)
		}
	}
	return p.l, nil
}

type planner struct {
	spec   *schema.Spec
	disks  map[string]Disk
	ids    ids
	l      *Layout
	errs   []schema.Problem
	roots  int                           // number of images deployed at "/"
	raidOf map[*Partition]*schema.Volume // raid members -> their volume
	pvOf   []pvVolume
}

type pvVolume struct {
	part *Partition
	disk *DiskLayout
	vol  *schema.Volume
}

func (p *planner) errf(ptr, format string, args ...any) {
	p.errs = append(p.errs, schema.Problem{Pointer: ptr, Message: fmt.Sprintf(format, args...)})
}

// lookup finds the facts for a spec disk: the caller's, else the spec's own size.
func (p *planner) lookup(st *schema.Storage, ptr string) (Disk, bool) {
	for _, key := range []string{st.DiskID.Value, strings.TrimPrefix(st.DiskID.Value, "/dev/")} {
		if d, ok := p.disks[key]; ok {
			if d.SectorSize == 0 {
				d.SectorSize = 512
			}
			return d, true
		}
	}
	if st.Size != nil && st.Size.Q.Kind == schema.Absolute && st.Size.Q.Bytes > 0 {
		return Disk{SizeBytes: st.Size.Q.Bytes, SectorSize: 512}, true
	}
	p.errf(ptr, "no size known for disk %s: give the disk a \"size\" or map it to a device (--device %s=SIZE|PATH)", st.DiskID, st.DiskID.Value)
	return Disk{}, false
}

// item is a partition waiting for its sectors.
type item struct {
	part    *Partition
	sectors uint64
	ptr     string
}

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

func (p *planner) planDisk(st *schema.Storage, ptr string, facts Disk, first bool) *DiskLayout {
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
	start := alignUp(d.FirstUsable, d.Alignment)
	end := alignDown(d.LastUsable+1, d.Alignment) // exclusive
	var avail uint64
	if end > start {
		avail = end - start
	}

	var implicit []*item
	addImplicit := func(role Role, name, typ string, size uint64) *Partition {
		part := &Partition{Role: role, Name: name, Type: typ, TypeName: typeName(typ)}
		implicit = append(implicit, &item{part: part, sectors: alignUp(ceilDiv(size, lss), d.Alignment)})
		return part
	}
	mode := p.spec.Mode()
	if mode == schema.BootBIOS || mode == schema.BootBoth {
		part := addImplicit(RoleBIOSBoot, "BIOS boot", TypeBIOSBoot, BIOSBootSize)
		part.GUID = p.ids.guid("bios-boot:" + st.DiskID.String())
	}
	if first && p.roots >= 2 {
		part := addImplicit(RoleMultiboot, "multiboot", TypeLinuxFS, sizeOr(p.spec.MultibootSize, DefaultMultibootSize))
		part.GUID = p.ids.guid("multiboot")
		part.FS = &Filesystem{Type: "ext4", UUID: p.ids.uuid("fs:multiboot"), Label: "multiboot", FstabEnabled: false}
		p.l.Multiboot = part.FS
	}
	if first && (mode == schema.BootUEFI || mode == schema.BootBoth) {
		part := addImplicit(RoleESP, "EFI system", TypeESP, sizeOr(p.spec.ESPSize, DefaultESPSize))
		part.GUID = p.ids.guid("esp")
		// The UEFI spec requires FAT32 on the ESP; mkfs.vfat would pick FAT16 below 512 MiB.
		part.FS = &Filesystem{Type: "vfat", UUID: p.ids.fsUUID("fs:esp", "vfat"), Label: "ESP", MkfsOptions: []string{"-F", "32"}, FstabEnabled: false}
		p.l.ESP = part.FS
	}

	var implicitSectors uint64
	for _, it := range implicit {
		implicitSectors += it.sectors
	}
	var volSpace uint64
	if avail > implicitSectors {
		volSpace = avail - implicitSectors
	}

	var head, tail []*item
	var rem *item
	for j := range st.Volumes {
		v := &st.Volumes[j]
		vptr := schema.Ptr(ptr, "volumes", j)
		if v.Type == schema.VolLVMMetaPool || v.Size == nil || isZero(v.Size.Q) {
			continue
		}
		it := &item{part: p.volumePartition(d, v, vptr), ptr: vptr}
		switch v.Size.Q.Kind {
		case schema.Absolute:
			it.sectors = alignUp(ceilDiv(v.Size.Q.Bytes, lss), d.Alignment)
		case schema.Percent:
			it.sectors = alignDown(v.Size.Q.PercentOf(volSpace), d.Alignment)
			if it.sectors == 0 {
				p.errf(vptr+"/size", "%s of the %s disk %s leaves for volumes is less than 1 MiB", v.Size.Q, schema.HumanBytes(volSpace*lss), st.DiskID)
			}
		case schema.Remaining:
			rem = it
			continue
		}
		if rem == nil {
			head = append(head, it)
		} else {
			tail = append(tail, it)
		}
	}

	// Numbers follow the spec's order (implicit partitions first), so "the third volume is
	// partition N" holds whatever the placement. Tail volumes are declared after
	// "remaining", so declaration order is implicit, head, remaining, tail.
	all := append(append([]*item{}, implicit...), head...)
	if rem != nil {
		all = append(all, rem)
	}
	all = append(all, tail...)
	if len(all) > maxPartitions {
		p.errf(ptr, "disk %s would need %d partitions; a GPT holds %d", st.DiskID, len(all), maxPartitions)
		return nil
	}
	for n, it := range all {
		it.part.Number = n + 1
	}

	var need uint64
	for _, it := range all {
		if it != rem {
			need += it.sectors
		}
	}
	if need > avail {
		p.errf(ptr, "disk %s: the partitions need %s (volumes %s + %s the planner adds), but the disk has %s for partitions (%s less the GPT and 1 MiB alignment)",
			st.DiskID, mib(need*lss), mib((need-implicitSectors)*lss), mib(implicitSectors*lss), mib(avail*lss), schema.HumanBytes(facts.SizeBytes))
		return nil
	}
	if rem != nil {
		rem.sectors = alignDown(avail-need, d.Alignment)
		if rem.sectors == 0 {
			p.errf(rem.ptr+"/size", "nothing is left for \"remaining\" on disk %s: the other partitions take %s of %s", st.DiskID, mib(need*lss), mib(avail*lss))
			return nil
		}
	}

	cursor := start
	for _, it := range all[:len(implicit)+len(head)] {
		place(it, &cursor)
	}
	if rem != nil {
		place(rem, &cursor)
	}
	back := end
	for k := len(tail) - 1; k >= 0; k-- {
		back -= tail[k].sectors
		c := back
		place(tail[k], &c)
	}

	d.Partitions = make([]*Partition, len(all))
	for n, it := range all {
		it.part.SizeBytes = it.part.Sectors() * lss
		d.Partitions[n] = it.part
		if it.part.FS != nil {
			it.part.FS.Device = partDevice(d, it.part.Number)
		}
	}
	return d
}

func place(it *item, cursor *uint64) {
	it.part.Start = *cursor
	it.part.End = *cursor + it.sectors - 1
	*cursor += it.sectors
}

// volumePartition makes the GPT entry (and filesystem) for a disk volume.
func (p *planner) volumePartition(d *DiskLayout, v *schema.Volume, ptr string) *Partition {
	part := &Partition{Source: ptr, KeepData: v.KeepData, GUID: p.ids.guid("part:" + ptr)}
	switch v.Type {
	case schema.VolPV:
		part.Role, part.Type, part.VG = RolePV, TypeLinuxLVM, v.VG
		part.Name = "pv-" + v.VG
		p.pvOf = append(p.pvOf, pvVolume{part: part, disk: d, vol: v})
	case schema.VolRAID:
		part.Role, part.Type = RoleRAID, TypeLinuxRAID
		p.raidOf[part] = v
		part.Name = "raid-" + volumeName(v, p.roots)
	default:
		part.Role, part.Type = RoleVolume, TypeLinuxFS
		if v.Type == schema.VolBoot {
			part.Role = RoleBoot
			part.Attributes |= AttrLegacyBoot
		}
		if v.IsSwap() {
			part.Type = TypeLinuxSwap
		}
		part.Name = v.Name
		if part.Name == "" {
			part.Name = volumeName(v, p.roots)
		}
		part.FS = p.filesystem(v, ptr)
	}
	part.Name = truncUTF16(part.Name, gptNameUnits)
	part.TypeName = typeName(part.Type)
	return part
}

// filesystem plans the filesystem a volume carries, or nil for a bare volume.
func (p *planner) filesystem(v *schema.Volume, ptr string) *Filesystem {
	if v.FileSystem == "" {
		return nil
	}
	fs := &Filesystem{
		Type:         v.FileSystem,
		UUID:         p.ids.fsUUID("fs:"+ptr, v.FileSystem),
		Label:        v.FSLabel(),
		MkfsOptions:  strings.Fields(v.MkfsOptions),
		Mount:        v.Mount,
		Images:       append([]string(nil), v.Bound...),
		FstabOptions: v.FstabOptions,
		FstabEnabled: v.InFstab(),
		KeepData:     v.KeepData,
		Source:       ptr,
	}
	if fs.Label == "" {
		fs.Label = defaultLabel(v)
	}
	if fs.FstabOptions == "" {
		fs.FstabOptions = "defaults"
		if v.IsSwap() {
			fs.FstabOptions = "sw"
		}
	}
	return fs
}

func typeName(guid string) string {
	switch guid {
	case TypeBIOSBoot:
		return "BIOS boot"
	case TypeESP:
		return "EFI system"
	case TypeLinuxSwap:
		return "Linux swap"
	case TypeLinuxLVM:
		return "Linux LVM"
	case TypeLinuxRAID:
		return "Linux RAID"
	}
	return "Linux filesystem"
}

// partDevice names partition n of d: the kernel's node name for a real block device,
// "<disk id>#<n>" otherwise (a simulated disk or an image file, whose loop device is
// only known when it is attached).
func partDevice(d *DiskLayout, n int) string {
	if strings.HasPrefix(d.Path, "/dev/") {
		if last := d.Path[len(d.Path)-1]; last >= '0' && last <= '9' {
			return fmt.Sprintf("%sp%d", d.Path, n)
		}
		return fmt.Sprintf("%s%d", d.Path, n)
	}
	return fmt.Sprintf("%s#%d", d.ID.Value, n)
}

func sizeOr(s *schema.Size, def uint64) uint64 {
	if s != nil && s.Q.Kind == schema.Absolute {
		return s.Q.Bytes
	}
	return def
}

func isZero(q schema.Quantity) bool {
	return (q.Kind == schema.Absolute && q.Bytes == 0) || (q.Kind == schema.Percent && q.Pct == 0)
}

func alignUp(x, a uint64) uint64   { return (x + a - 1) / a * a }
func alignDown(x, a uint64) uint64 { return x / a * a }
func ceilDiv(x, a uint64) uint64   { return (x + a - 1) / a }

// mib renders a byte count in MiB with two decimals, the unit of layout errors.
func mib(b uint64) string { return fmt.Sprintf("%.2f MiB", float64(b)/float64(schema.MiB)) }

// gptNameUnits is the length of a GPT partition name: 36 UTF-16 code units.
const gptNameUnits = 36

// utf16Len is the number of UTF-16 code units s takes in a GPT entry.
func utf16Len(s string) int {
	n := 0
	for _, r := range s {
		n += utf16.RuneLen(r)
	}
	return n
}

// truncUTF16 cuts s to at most n UTF-16 code units, never inside a character.
func truncUTF16(s string, n int) string {
	units := 0
	for i, r := range s {
		if units += utf16.RuneLen(r); units > n {
			return s[:i]
		}
	}
	return s
}
