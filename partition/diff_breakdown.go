package partition

import (
	"errors"
	"fmt"
	"strings"
)

// Breakdown is what applying a changed spec to a deployed node does: each volume's and
// each image's change, the boot menu's, a picture of each disk before and after, and
// the refusals. Its JSON form is stable: fields are only ever added.
type Breakdown struct {
	// Policy is the new spec's partitions_policy.
	Policy string `json:"partitions_policy"`
	// Summary is the one-line summary WriteText prints first.
	Summary string `json:"summary"`
	// NothingToDo is true when no volume, image or boot entry changes.
	NothingToDo bool           `json:"nothing_to_do"`
	Disks       []DiskPicture  `json:"disks"`
	Volumes     []VolumeChange `json:"volumes"`
	Images      []ImageChange  `json:"images"`
	Bootloader  BootChange     `json:"bootloader"`
	// Refusals are why the update cannot be applied; empty when it can.
	Refusals []Refusal `json:"refusals,omitempty"`
}

// Volume kinds (VolumeChange.Kind).
const (
	KindPartition = "partition"
	KindLV        = "lv"
)

// VolumeAction is what an update does to a volume.
type VolumeAction string

// Volume actions. Destroyed and re-created volumes lose their data.
const (
	ActionKept      VolumeAction = "kept"
	ActionCreated   VolumeAction = "created"
	ActionGrown     VolumeAction = "grown"
	ActionDestroyed VolumeAction = "destroyed"
	ActionRecreated VolumeAction = "re-created"
)

// VolumeChange is what an update does to one partition or logical volume.
type VolumeChange struct {
	Kind string `json:"kind"` // KindPartition, KindRAID or KindLV
	// Name is "vda#3" for a partition, "md/md0" for an md array (its size is its
	// smallest member's), "os/data" for a logical volume.
	Name   string `json:"name"`
	Disk   string `json:"disk,omitempty"`
	Number int    `json:"number,omitempty"`
	VG     string `json:"vg,omitempty"`
	LV     string `json:"lv,omitempty"`
	// Role, Mount and FSType describe the volume after the update, or before it for a
	// destroyed one. Mount is "" for an unmounted volume.
	Role   Role         `json:"role,omitempty"`
	Mount  string       `json:"mount,omitempty"`
	FSType string       `json:"fs_type,omitempty"`
	Images []string     `json:"images,omitempty"`
	Action VolumeAction `json:"action"`
	// Reason says why a volume is re-created or destroyed ("moved", "shrunk", ...).
	Reason string `json:"reason,omitempty"`
	// FromBytes and ToBytes are the size before and after (0 for none); FromStart and
	// ToStart a partition's first sector.
	FromBytes uint64 `json:"from_bytes,omitempty"`
	ToBytes   uint64 `json:"to_bytes,omitempty"`
	FromStart uint64 `json:"from_start_lba,omitempty"`
	ToStart   uint64 `json:"to_start_lba,omitempty"`
	KeepData  bool   `json:"keep_data,omitempty"`
	DataLost  bool   `json:"data_lost,omitempty"`
}

// Changed reports whether the update writes to the volume.
func (v *VolumeChange) Changed() bool { return v.Action != ActionKept }

// ImageAction is what an update does to an image.
type ImageAction string

// Image actions.
const (
	ImageUnchanged ImageAction = "unchanged"
	ImageUpdated   ImageAction = "updated"
	ImageAdded     ImageAction = "added"
	ImageRemoved   ImageAction = "removed"
)

// ImageVersion identifies an image's content: what boot-info.json and the record keep.
type ImageVersion struct {
	ImageName string `json:"image_name,omitempty"`
	ImageUUID string `json:"image_uuid,omitempty"`
	Digest    string `json:"digest,omitempty"`
	URL       string `json:"url,omitempty"`
}

// ImageChange is what an update does to one image.
type ImageChange struct {
	Name   string      `json:"name"`
	Action ImageAction `json:"action"`
	// From is the deployed image (nil for an added one), To the spec's (nil for a
	// removed one).
	From *ImageVersion `json:"from,omitempty"`
	To   *ImageVersion `json:"to,omitempty"`
	// NoOp is set on an unchanged image whose spec entry changed (another URL, say) but
	// whose image_uuid and digest match the deployed ones: reloading it would write the
	// same image again.
	NoOp bool `json:"no_op,omitempty"`
	// Downgrade is set on an updated image whose new version is older (see
	// CompareVersions).
	Downgrade   bool `json:"downgrade,omitempty"`
	NeedsReboot bool `json:"needs_reboot,omitempty"`
	// Recreates lists, for an updated image, the filesystems its reload makes anew
	// ("/ on vda#4"): the ones only it mounts, without keep_data. Their data is replaced
	// by the new image's.
	Recreates []string `json:"recreates,omitempty"`
	Note      string   `json:"note,omitempty"`
}

// BootChange is what an update does to the boot menu: entries by image name.
type BootChange struct {
	Added   []string `json:"added,omitempty"`
	Removed []string `json:"removed,omitempty"`
	// Changed are entries whose image is updated: their title and ids change.
	Changed       []string `json:"changed,omitempty"`
	DefaultBefore string   `json:"default_before"`
	DefaultAfter  string   `json:"default_after"`
}

// DiskPicture is one disk drawn to scale before and after the update.
type DiskPicture struct {
	Disk      string `json:"disk"`
	SizeBytes uint64 `json:"size_bytes"`
	Before    string `json:"before"`
	After     string `json:"after"`
}

// ErrNeedsForce is matched (errors.Is) by every *ForceError.
var ErrNeedsForce = errors.New("update needs --force")

// ForceError names the images an update refuses unless forced: no-ops and downgrades.
type ForceError struct {
	NoOps      []string
	Downgrades []string
}

// Error names each image and why.
func (e *ForceError) Error() string {
	var parts []string
	if len(e.NoOps) > 0 {
		parts = append(parts, fmt.Sprintf("already deployed (same image_uuid and digest): %s", strings.Join(e.NoOps, ", ")))
	}
	if len(e.Downgrades) > 0 {
		parts = append(parts, fmt.Sprintf("downgraded: %s", strings.Join(e.Downgrades, ", ")))
	}
	return "refusing without --force: " + strings.Join(parts, "; ")
}

// Is makes errors.Is(err, ErrNeedsForce) true.
func (e *ForceError) Is(target error) bool { return target == ErrNeedsForce }

// Unforced returns a *ForceError naming every no-op and downgraded image, nil when there
// is none: update refuses them unless forced. An update with nothing to do has no no-op:
// a spec applied twice is "nothing to do", not a refusal.
func (b *Breakdown) Unforced() error {
	var e ForceError
	for _, im := range b.Images {
		if im.NoOp {
			e.NoOps = append(e.NoOps, im.Name)
		}
		if im.Downgrade {
			from, to := versionLabels(im.From, im.To)
			e.Downgrades = append(e.Downgrades, fmt.Sprintf("%s (%s -> %s)", im.Name, from, to))
		}
	}
	if len(e.NoOps) == 0 && len(e.Downgrades) == 0 {
		return nil
	}
	return &e
}

// nothing reports whether the update changes nothing.
func (b *Breakdown) nothing() bool {
	for i := range b.Volumes {
		if b.Volumes[i].Changed() {
			return false
		}
	}
	for _, im := range b.Images {
		if im.Action != ImageUnchanged || im.NoOp {
			return false
		}
	}
	bc := b.Bootloader
	return len(bc.Added)+len(bc.Removed)+len(bc.Changed) == 0 && bc.DefaultBefore == bc.DefaultAfter
}
