package partition

import (
	"fmt"
	"strings"
	"unicode/utf16"

	"github.com/provisioner/provisioner/schema"
)

// Sizes of the partitions the planner adds, and layout constants.
const (
	BIOSBootSize = 1 * schema.MiB
	// DefaultESPSize holds what goes on the ESP, grub's EFI image alone (under 1 MiB;
	// grub's directory is on the multiboot partition or in the image's /boot), many
	// times over, and keeps the partitions the planner adds within what Bareon added:
	// 24 MiB per disk, and a 100 MiB multiboot partition with two or more images. GPT
	// and alignment (2 MiB), BIOS boot (1 MiB) and this ESP take 23 MiB, so a
	// document that fits its disk under Bareon fits under us. Too small for FAT32, it
	// is FAT16 (defaultESPMkfs).
	DefaultESPSize = 20 * schema.MiB
	// DefaultMultibootSize is the size Bareon gave its multiboot partition.
	DefaultMultibootSize = 100 * schema.MiB
	// Align is the partition alignment: 1 MiB suits every SSD erase block, 4Kn and RAID
	// stripe we know of, and is what parted, sgdisk and the installers use.
	Align = 1 * schema.MiB
	// gptEntryArray is the size of a 128-entry GPT partition array.
	gptEntryArray = 128 * 128
	maxPartitions = 128
)

// defaultESPMkfs makes the default ESP FAT16 (UEFI firmware reads FAT12, FAT16 and
// FAT32) with one sector per cluster, so it has enough clusters for FAT16 with
// 4096-byte sectors too. An ESP sized with esp_size is FAT32 (sizedESPMkfs).
var defaultESPMkfs = []string{"-F", "16", "-s", "1"}

// sizedESPMkfs makes an ESP sized with esp_size FAT32, as the UEFI specification asks
// of fixed disks.
var sizedESPMkfs = []string{"-F", "32"}

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

// volumePartition makes the GPT entry (and filesystem) for a disk volume.
func (p *planner) volumePartition(d *DiskLayout, v *schema.Volume, ptr string) *Partition {
	part := &Partition{Source: ptr, KeepData: v.KeepData, GUID: v.PartitionGUID}
	if part.GUID == "" {
		part.GUID = p.ids.guid("part:" + ptr)
	}
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
