package schema

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
)

// Spec is a validated provision.json. Only Load builds one, so every Spec seen by other
// packages has passed both the JSON Schema and the semantic checks, and its derived fields
// (parsed sizes, image bindings, normalised mounts) are filled in.
type Spec struct {
	Images           []Image       `json:"images"`
	Partitions       []Storage     `json:"partitions"`
	PartitionsPolicy string        `json:"partitions_policy,omitempty"`
	ImageDeployFlags *DeployFlags  `json:"image_deploy_flags,omitempty"`
	DeployData       *DeployData   `json:"deploy_data,omitempty"`
	BootMode         string        `json:"boot_mode,omitempty"`
	MultibootSize    *Size         `json:"multiboot_size,omitempty"`
	ESPSize          *Size         `json:"esp_size,omitempty"`
	Grub             *GrubSettings `json:"grub,omitempty"`
	// Ramdisk asks for the deploy ramdisk to be kept on the node (an extension).
	Ramdisk *RamdiskSource `json:"ramdisk,omitempty"`
}

// RamdiskSource is where the deploy ramdisk to keep on the node comes from: a directory
// holding vmlinuz and initramfs.cpio.zst, the files `make ramdisk` writes. Keeping it lets
// the node boot the ramdisk again later without the network boot (a reload of the running
// root, a failed trial on a single-image node), and puts grub's directory on a multiboot
// partition even with one image, since the image's /boot is re-created by a reload.
type RamdiskSource struct {
	// URL is the directory's http://, https:// or file:// URL.
	URL string `json:"url"`
	// Checksum is the URL of a checksum file listing both files by name (SHA256SUMS),
	// "" for none.
	Checksum string `json:"checksum,omitempty"`
}

// KeepsRamdisk reports whether the deploy keeps the ramdisk on the node: the spec asks for
// it and there is an OS image, hence a bootloader, to add it to.
func (s *Spec) KeepsRamdisk() bool { return s.Ramdisk != nil && s.RootImages() > 0 }

// Multiboot reports whether the plan has the implicit multiboot partition: with two or
// more OS images, which share it, or with one that keeps the ramdisk.
func (s *Spec) Multiboot() bool { return s.RootImages() >= 2 || s.KeepsRamdisk() }

// Partition policies (Bareon's names).
const (
	PolicyClean         = "clean"
	PolicyVerify        = "verify"
	PolicyNailgunLegacy = "nailgun_legacy"
)

// Boot modes. BootBoth is the default so that a disk boots on either firmware.
const (
	BootBIOS = "bios"
	BootUEFI = "uefi"
	BootBoth = "both"
)

// Policy returns the partitions policy with our default (clean) applied. A document
// that sets keep_data and names no policy has Bareon's default, verify, set by Load.
func (s *Spec) Policy() string {
	if s.PartitionsPolicy == "" {
		return PolicyClean
	}
	return s.PartitionsPolicy
}

// Mode returns the boot mode with its default (both) applied.
func (s *Spec) Mode() string {
	if s.BootMode == "" {
		return BootBoth
	}
	return s.BootMode
}

// KernelParams returns deploy_data.kernel_params, or "".
func (s *Spec) KernelParams() string {
	if s.DeployData == nil {
		return ""
	}
	return s.DeployData.KernelParams
}

// GrubTimeout returns the menu timeout in seconds (default 5; 0 is allowed).
func (s *Spec) GrubTimeout() int {
	if s.Grub == nil || s.Grub.Timeout == nil {
		return 5
	}
	return int(*s.Grub.Timeout)
}

// RootImages counts the whole-OS images (target "/"). Two or more share the implicit
// multiboot partition that holds grub and boot-info.json.
func (s *Spec) RootImages() int {
	n := 0
	for i := range s.Images {
		if s.Images[i].IsRoot() {
			n++
		}
	}
	return n
}

// Image is one OS or utility image to deploy.
type Image struct {
	Name         string `json:"name"`
	ImagePullURL string `json:"image_pull_url,omitempty"`
	// URL is Bareon's user-facing alias of ImagePullURL.
	URL       string `json:"url,omitempty"`
	Target    string `json:"target"`
	Boot      Flag   `json:"boot,omitempty"`
	ImageUUID string `json:"image_uuid,omitempty"`
	ImageName string `json:"image_name,omitempty"`
	Checksum  string `json:"checksum,omitempty"`
	Format    string `json:"format,omitempty"`
	// NodeTools asks for the provisioner binary and its confirm unit to be installed
	// into the image, so that the booted OS can confirm a trial boot and reload its
	// siblings. Off by default: the image is changed only when it asks. Only a whole-OS
	// image boots, so a utility image's NodeTools is ignored (Load warns).
	NodeTools NodeTools `json:"node_tools,omitzero"`
}

// NodeTools is images[].node_tools: true or false, or an object of settings, which
// asks for the node tools as true does.
type NodeTools struct {
	// On is whether the image gets the node tools.
	On bool
	// FleetLock, when set, is written into the image as the node's FleetLock client
	// configuration, so that its reboots take a slot of the fleet.
	FleetLock *NodeFleetLock `json:"fleetlock,omitempty"`
}

// NodeFleetLock is node_tools.fleetlock: the FleetLock server and group of the node,
// and its id at the server when the operator pins one.
type NodeFleetLock struct {
	URL   string `json:"url"`
	Group string `json:"group,omitempty"`
	ID    string `json:"id,omitempty"`
}

// UnmarshalJSON takes true, false or an object (which turns the node tools on).
func (n *NodeTools) UnmarshalJSON(b []byte) error {
	var on bool
	if err := json.Unmarshal(b, &on); err == nil {
		*n = NodeTools{On: on}
		return nil
	}
	var obj struct {
		FleetLock *NodeFleetLock `json:"fleetlock"`
	}
	if err := json.Unmarshal(b, &obj); err != nil {
		return fmt.Errorf("%s is not true, false or an object", bytes.TrimSpace(b))
	}
	*n = NodeTools{On: true, FleetLock: obj.FleetLock}
	return nil
}

// MarshalJSON writes true or false, or the object when it carries settings.
func (n NodeTools) MarshalJSON() ([]byte, error) {
	if n.FleetLock == nil {
		return json.Marshal(n.On)
	}
	return json.Marshal(struct {
		FleetLock *NodeFleetLock `json:"fleetlock"`
	}{n.FleetLock})
}

// Source returns where the image is pulled from, whichever key named it.
func (im *Image) Source() string {
	if im.ImagePullURL != "" {
		return im.ImagePullURL
	}
	return im.URL
}

// IsRoot reports whether the image is a whole OS (deployed at "/"), as opposed to a
// utility image deployed under a sub-path of other images' trees.
func (im *Image) IsRoot() bool { return im.Target == "/" }

// DeployFlags is Bareon's image_deploy_flags; kept only so documents round-trip.
type DeployFlags struct {
	RsyncFlags string `json:"rsync_flags,omitempty"`
}

// DeployData carries parameters for the deployed OSes' boot entries.
type DeployData struct {
	KernelParams string `json:"kernel_params,omitempty"`
	// Ignored lists, sorted, the other keys the document gave (Bareon's deploy_data
	// carried data for its own driver); the loader warns about each.
	Ignored []string `json:"-"`
}

// UnmarshalJSON decodes kernel_params and notes the names of the other keys.
func (d *DeployData) UnmarshalJSON(b []byte) error {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil {
		return err
	}
	*d = DeployData{}
	for k, v := range m {
		if k != "kernel_params" {
			d.Ignored = append(d.Ignored, k)
			continue
		}
		if err := json.Unmarshal(v, &d.KernelParams); err != nil {
			return fmt.Errorf("kernel_params: %w", err)
		}
	}
	slices.Sort(d.Ignored)
	return nil
}

// Flag is a boolean that a document may also write as 1 or 0, as Bareon's schema allows.
type Flag bool

// UnmarshalJSON takes true, false, 1 and 0 (also written 1.0 or 0.0).
func (f *Flag) UnmarshalJSON(b []byte) error {
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	switch v {
	case true, float64(1):
		*f = true
	case false, float64(0):
		*f = false
	default:
		return fmt.Errorf("%s is not true, false, 1 or 0", bytes.TrimSpace(b))
	}
	return nil
}

// GrubSettings are our boot-menu extensions.
type GrubSettings struct {
	// Timeout is a float64 because JSON Schema's "integer" accepts 5.0; the schema has
	// already checked it is whole.
	Timeout *float64 `json:"timeout,omitempty"`
}

// Storage kinds: an entry of "partitions" is a disk or an LVM volume group.
const (
	KindDisk = "disk"
	KindVG   = "vg"
)

// Storage is one entry of "partitions": a disk (ID is an object) or a volume group (ID is a
// string). DiskID and VGName hold the decoded id for the respective kind.
type Storage struct {
	Type    string          `json:"type"`
	RawID   json.RawMessage `json:"id"`
	Name    string          `json:"name,omitempty"`
	Size    *Size           `json:"size,omitempty"`
	Volumes []Volume        `json:"volumes"`
	Label   string          `json:"label,omitempty"`
	// KeepData on a vg keeps the whole group under the verify policy.
	KeepData     bool            `json:"keep_data,omitempty"`
	Extra        json.RawMessage `json:"extra,omitempty"`
	FreeSpace    json.RawMessage `json:"free_space,omitempty"`
	MinSize      json.RawMessage `json:"min_size,omitempty"`
	AllocateSize json.RawMessage `json:"_allocate_size,omitempty"`

	DiskID DiskID `json:"-"`
	VGName string `json:"-"`
}

// DiskID says how to find a disk on the machine.
type DiskID struct {
	Type  string `json:"type"`
	Value string `json:"value"`
}

// String shows a disk id as people write it: "vda" for a name, "type:value" otherwise.
func (d DiskID) String() string {
	if d.Type == "name" {
		return d.Value
	}
	return d.Type + ":" + d.Value
}

// Volume types.
const (
	VolPartition   = "partition"
	VolBoot        = "boot"
	VolPV          = "pv"
	VolRAID        = "raid"
	VolLVMMetaPool = "lvm_meta_pool"
	VolLV          = "lv"
)

// Volume is one entry of a disk's or a vg's "volumes".
type Volume struct {
	Type         string   `json:"type"`
	Size         *Size    `json:"size,omitempty"`
	Mount        string   `json:"mount,omitempty"`
	FileSystem   string   `json:"file_system,omitempty"`
	Images       []string `json:"images,omitempty"`
	KeepData     bool     `json:"keep_data,omitempty"`
	FstabOptions string   `json:"fstab_options,omitempty"`
	FstabEnabled *bool    `json:"fstab_enabled,omitempty"`
	DiskLabel    string   `json:"disk_label,omitempty"`
	Label        string   `json:"label,omitempty"`
	MkfsOptions  string   `json:"mkfs_options,omitempty"`
	Name         string   `json:"name,omitempty"`
	VG           string   `json:"vg,omitempty"`
	LVMMetaSize  *Size    `json:"lvm_meta_size,omitempty"`
	// PartitionGUID is the GPT partition GUID asked for; Load checks its form and
	// writes it in upper case, as the planner's generated GUIDs are.
	PartitionGUID string `json:"partition_guid,omitempty"`

	// Bound is the list of images the volume belongs to after Bareon's default (no
	// "images" key: the first image) has been applied.
	Bound []string `json:"-"`
	// boundIdx holds the index in images of each name of Bound, so that grouping by
	// image never hashes or copies the names again.
	boundIdx []int
}

// MountPoint returns the normalised mount path, or "" for an unmounted volume
// ("none" or absent). Swap volumes return "swap".
func (v *Volume) MountPoint() string { return normMount(v.Mount) }

// Skipped reports a volume of size zero (absolute or a percentage), which the planner
// leaves out. Load parses the size first; before that it reports false.
func (v *Volume) Skipped() bool {
	if v.Size == nil {
		return false
	}
	q := v.Size.Q
	return v.Size.parsed && ((q.Kind == Absolute && q.Bytes == 0) || (q.Kind == Percent && q.Pct == 0))
}

// IsSwap reports a swap volume.
func (v *Volume) IsSwap() bool { return v.FileSystem == "swap" }

// FSLabel returns the filesystem label asked for, under either key.
func (v *Volume) FSLabel() string {
	if v.Label != "" {
		return v.Label
	}
	return v.DiskLabel
}

// InFstab reports whether the volume's fstab line is active (fstab_enabled defaults to true).
func (v *Volume) InFstab() bool { return v.FstabEnabled == nil || *v.FstabEnabled }

// Size is a size as written in the document (a JSON number or string) and, once Load has
// checked it, its parsed Quantity.
type Size struct {
	Raw      string
	IsNumber bool
	Q        Quantity

	parsed bool // Q holds the parsed size
}

// UnmarshalJSON keeps the literal so errors can quote what the user wrote.
func (s *Size) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if len(b) > 0 && b[0] == '"' {
		s.IsNumber = false
		return json.Unmarshal(b, &s.Raw)
	}
	var n json.Number
	if err := json.Unmarshal(b, &n); err != nil {
		return fmt.Errorf("size must be a number or a string: %w", err)
	}
	s.IsNumber, s.Raw = true, n.String()
	return nil
}

// MarshalJSON writes the size back as it was given.
func (s Size) MarshalJSON() ([]byte, error) {
	if s.IsNumber {
		return []byte(s.Raw), nil
	}
	return json.Marshal(s.Raw)
}

// Quote renders the size as it appeared in the document, for messages.
func (s *Size) Quote() string {
	if s.IsNumber {
		return s.Raw
	}
	return fmt.Sprintf("%q", s.Raw)
}
