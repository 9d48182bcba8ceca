// Package partition turns a validated spec into an exact disk layout (Plan) and applies
// it to disks (the partitions policies' action lists). The plan is a pure function of
// (spec, disk facts, seed): no I/O, no clock, no randomness, so the same inputs always
// give the same sectors, GUIDs and UUIDs, and a plan can be printed, diffed and tested
// before anything is written.
package partition

import (
	"errors"
	"strings"

	"github.com/provisioner/provisioner/schema"
)

// GPT partition type GUIDs used by the planner.
const (
	TypeBIOSBoot   = "21686148-6449-6E6F-744E-656564454649"
	TypeESP        = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"
	TypeLinuxFS    = "0FC63DAF-8483-4772-8E79-3D69D8477DE4"
	TypeLinuxSwap  = "0657FD6D-A4AB-43C4-84E5-0933C84B4F4F"
	TypeLinuxLVM   = "E6D6D379-F507-44C2-A23C-238F2A3DF928"
	TypeLinuxRAID  = "A19D880F-05FC-4D3B-A006-743F0F84911E"
	AttrLegacyBoot = uint64(1) << 2 // GPT attribute bit 2: legacy BIOS bootable
)

// Role says why a partition exists.
type Role string

// Partition roles.
const (
	RoleBIOSBoot  Role = "bios-boot" // grub's core image (BIOS), one per disk
	RoleESP       Role = "esp"       // EFI system partition, first disk
	RoleMultiboot Role = "multiboot" // grub's directory and boot-info.json, first disk
	RoleVolume    Role = "volume"    // a "partition" volume of the spec
	RoleBoot      Role = "boot"      // a "boot" volume: legacy-BIOS-bootable attribute set
	RolePV        Role = "pv"        // an LVM physical volume
	RoleRAID      Role = "raid"      // a member of an md raid1 array
)

// Disk is what the planner needs to know about a target disk. The probe fills it from
// the device; `plan` may simulate it.
type Disk struct {
	// Path is the block device or disk-image file, "" for a simulated disk.
	Path string `json:"path,omitempty"`
	// SizeBytes is the disk's capacity.
	SizeBytes uint64 `json:"size_bytes"`
	// SectorSize is the logical sector size (512 or 4096).
	SectorSize uint64 `json:"sector_size"`
}

// Layout is a complete plan: every disk's GPT, the md arrays, the volume groups, and for
// each image what to mount and what its fstab says.
type Layout struct {
	Seed     string `json:"seed"`
	BootMode string `json:"boot_mode"`
	Policy   string `json:"partitions_policy"`
	// BootImage is the image whose entry boots by default.
	BootImage string        `json:"boot_image"`
	Disks     []*DiskLayout `json:"disks"`
	RAIDs     []*RAID       `json:"raids,omitempty"`
	VGs       []*VG         `json:"vgs,omitempty"`
	Images    []*Image      `json:"images"`
	// Multiboot is the filesystem holding grub and boot-info.json when two or more OS
	// images are deployed, or one that keeps the deploy ramdisk (which lives there too);
	// nil otherwise.
	Multiboot *Filesystem `json:"multiboot,omitempty"`
	// ESP is the EFI system partition's filesystem (boot_mode uefi or both).
	ESP *Filesystem `json:"esp,omitempty"`
}

// DiskLayout is one disk's GPT.
type DiskLayout struct {
	// ID is the spec's id of the disk (e.g. name "vda").
	ID schema.DiskID `json:"id"`
	// Source is the JSON pointer of the disk in the spec.
	Source string `json:"source"`
	Disk
	// Sectors is the number of logical sectors.
	Sectors uint64 `json:"sectors"`
	// FirstUsable and LastUsable bound the space a GPT with 128 entries leaves.
	FirstUsable uint64 `json:"first_usable_lba"`
	LastUsable  uint64 `json:"last_usable_lba"`
	// Alignment is the partition alignment in sectors (1 MiB).
	Alignment  uint64       `json:"alignment_sectors"`
	GUID       string       `json:"disk_guid"`
	Partitions []*Partition `json:"partitions"`
}

// Partition is one GPT entry.
type Partition struct {
	Number int    `json:"number"`
	Name   string `json:"name"`
	Role   Role   `json:"role"`
	// Start and End are inclusive logical sectors.
	Start      uint64 `json:"start_lba"`
	End        uint64 `json:"end_lba"`
	SizeBytes  uint64 `json:"size_bytes"`
	Type       string `json:"type_guid"`
	TypeName   string `json:"type_name"`
	GUID       string `json:"partition_guid"`
	Attributes uint64 `json:"attributes,omitempty"`
	// FS is the filesystem made directly on the partition (none for pv and raid members).
	FS *Filesystem `json:"filesystem,omitempty"`
	// VG names the volume group of a pv; RAID the md array of a raid member.
	VG       string `json:"vg,omitempty"`
	RAID     string `json:"raid,omitempty"`
	KeepData bool   `json:"keep_data,omitempty"`
	// Source is the JSON pointer of the volume, "" for partitions the planner adds.
	Source string `json:"source,omitempty"`
}

// Sectors returns the partition's length in sectors.
func (p *Partition) Sectors() uint64 { return p.End - p.Start + 1 }

// Filesystem is a filesystem to make (or keep) and where it is used.
type Filesystem struct {
	Type        string   `json:"type"`
	UUID        string   `json:"uuid"`
	Label       string   `json:"label,omitempty"`
	MkfsOptions []string `json:"mkfs_options,omitempty"`
	// Mount is the mount point inside each bound image, "swap", or "" when unmounted.
	Mount        string   `json:"mount,omitempty"`
	Images       []string `json:"images,omitempty"`
	FstabOptions string   `json:"fstab_options,omitempty"`
	FstabEnabled bool     `json:"fstab_enabled"`
	KeepData     bool     `json:"keep_data,omitempty"`
	// Device is where the filesystem lives: a partition ("vda#3"), an md array
	// ("/dev/md/md0") or a logical volume ("/dev/os/root").
	Device string `json:"device"`
	Source string `json:"source,omitempty"`
}

// BoundTo reports whether the filesystem belongs to the named image.
func (f *Filesystem) BoundTo(image string) bool {
	for _, im := range f.Images {
		if im == image {
			return true
		}
	}
	return false
}

// RAID is an md raid1 array over partitions of several disks.
type RAID struct {
	Name    string    `json:"name"`
	Level   int       `json:"level"`
	UUID    string    `json:"uuid"`
	Members []PartRef `json:"members"`
	// MemberBytes is the smallest member; the array is that minus md's metadata.
	MemberBytes uint64      `json:"member_bytes"`
	FS          *Filesystem `json:"filesystem,omitempty"`
	Sources     []string    `json:"sources"`
}

// Device is the md device node the array is created as.
func (r *RAID) Device() string { return "/dev/md/" + r.Name }

// PartRef names a partition of a planned disk.
type PartRef struct {
	Disk      string `json:"disk"`
	Partition int    `json:"partition"`
}

// VG is an LVM volume group.
type VG struct {
	Name       string `json:"name"`
	Source     string `json:"source"`
	ExtentSize uint64 `json:"extent_bytes"`
	PVs        []*PV  `json:"pvs"`
	// Extents is the number of extents all pvs provide; FreeExtents what the lvs leave.
	Extents     uint64 `json:"extents"`
	FreeExtents uint64 `json:"free_extents"`
	LVs         []*LV  `json:"lvs"`
	KeepData    bool   `json:"keep_data,omitempty"`
}

// PV is a physical volume: a partition and the metadata LVM keeps on it.
type PV struct {
	PartRef
	SizeBytes uint64 `json:"size_bytes"`
	// MetadataBytes and MetadataCopies are passed to pvcreate; DataStart is where the
	// first extent begins (pvcreate aligns it to 1 MiB).
	MetadataBytes  uint64 `json:"metadata_bytes"`
	MetadataCopies int    `json:"metadata_copies"`
	DataStart      uint64 `json:"data_start_bytes"`
	Extents        uint64 `json:"extents"`
	Source         string `json:"source"`
}

// LV is a logical volume.
type LV struct {
	Name      string      `json:"name"`
	Extents   uint64      `json:"extents"`
	SizeBytes uint64      `json:"size_bytes"`
	FS        *Filesystem `json:"filesystem,omitempty"`
	Source    string      `json:"source"`
}

// Image is what the deployer needs for one image: where its volumes mount and its fstab.
type Image struct {
	Name      string `json:"name"`
	URL       string `json:"url"`
	Target    string `json:"target"`
	Boot      bool   `json:"boot"`
	Checksum  string `json:"checksum,omitempty"`
	Format    string `json:"format,omitempty"`
	ImageUUID string `json:"image_uuid,omitempty"`
	ImageName string `json:"image_name,omitempty"`
	// NodeTools asks the deploy to install the provisioner and its confirm unit into the
	// image; the planner sets it only for a whole-OS image, the only kind that boots.
	NodeTools bool `json:"node_tools,omitempty"`
	// NodeFleetLock is the node's FleetLock server and group, which the node tools write
	// into the image as its FleetLock client configuration; nil without node tools or
	// without a server.
	NodeFleetLock *schema.NodeFleetLock `json:"node_fleetlock,omitempty"`
	// RootUUID is the UUID of the filesystem mounted at the image's target.
	RootUUID string `json:"root_uuid"`
	// Mounts are mounted in this order (shallowest first) and unmounted in reverse.
	Mounts []Mount `json:"mounts"`
	Fstab  string  `json:"fstab"`
}

// MountAt returns the image's mount at path ("/", "/boot"), or nil.
func (im *Image) MountAt(path string) *Mount {
	for i := range im.Mounts {
		if im.Mounts[i].Path == path {
			return &im.Mounts[i]
		}
	}
	return nil
}

// Mount is one filesystem mounted inside an image's tree.
type Mount struct {
	Path    string `json:"path"`
	Device  string `json:"device"`
	FSType  string `json:"fs_type"`
	FSUUID  string `json:"fs_uuid"`
	Options string `json:"options"`
}

// ErrLayout is matched (errors.Is) by every *LayoutError.
var ErrLayout = errors.New("layout does not fit")

// LayoutError lists every reason a spec cannot be laid out on the given disks, each at
// the JSON pointer of the disk, vg or volume concerned.
type LayoutError struct {
	Problems []schema.Problem
}

// Error lists every problem, one per line, each starting with its JSON pointer.
func (e *LayoutError) Error() string {
	lines := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		lines[i] = p.String()
	}
	return "layout does not fit:\n" + strings.Join(lines, "\n")
}

// Is makes errors.Is(err, ErrLayout) true.
func (e *LayoutError) Is(target error) bool { return target == ErrLayout }
