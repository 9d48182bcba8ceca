package partition

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// RecordVersion is the version of the Record format this provisioner writes and reads.
// A record of another version is refused rather than half understood: reload re-creates
// filesystems from it.
const RecordVersion = 1

// ErrNoRecord is matched by the error of reading the record of a node deployed before the
// provisioner kept one.
var ErrNoRecord = errors.New("no record of the deploy's plan")

// Record is what a deploy planned, kept beside boot-info.json so that the node can later
// reload one image, or be compared with a changed spec, without the spec or the seed the
// deploy had: every volume with its filesystem, UUID, label, mkfs options, keep_data and
// the images sharing it, each image's mounts and fstab, the boot mode and the menu's
// settings.
type Record struct {
	Version int `json:"version"`
	// Spec is the spec the deploy was given, as loaded.
	Spec json.RawMessage `json:"spec"`
	// Layout is the plan as applied: a reload updates its image's source fields.
	Layout *Layout `json:"layout"`
	// KernelParams and GrubTimeout are the menu's settings (deploy_data.kernel_params and
	// grub.timeout of the spec).
	KernelParams string `json:"kernel_params"`
	GrubTimeout  int    `json:"grub_timeout"`
	// Prober is how the deploy found the images' kernels (auto, os-prober, builtin).
	Prober string `json:"prober"`
	// Images says where each image (by name) now on the disks came from.
	Images map[string]ImageRecord `json:"images"`
}

// ImageRecord is the origin of one image as deployed or last reloaded.
type ImageRecord struct {
	// Digest is the verified checksum of the image's stream ("sha256:<hex>"), "" when none
	// was given.
	Digest string `json:"digest,omitempty"`
	// Operation is "deploy" or "reload"; At is when it ended.
	Operation string    `json:"operation"`
	At        time.Time `json:"at"`
}

// Image returns the layout's image named name, or nil.
func (r *Record) Image(name string) *Image {
	if r.Layout == nil {
		return nil
	}
	for _, im := range r.Layout.Images {
		if im.Name == name {
			return im
		}
	}
	return nil
}

// Encode returns the record as indented JSON with a trailing newline.
func (r *Record) Encode() ([]byte, error) {
	data, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encoding the plan record: %w", err)
	}
	return append(data, '\n'), nil
}

// DecodeRecord parses a record, refusing one of another version or without a layout.
func DecodeRecord(data []byte) (*Record, error) {
	var r Record
	if err := json.Unmarshal(data, &r); err != nil {
		return nil, fmt.Errorf("parsing the plan record: %w", err)
	}
	if r.Version != RecordVersion {
		return nil, fmt.Errorf("plan record version %d: this provisioner reads version %d", r.Version, RecordVersion)
	}
	if r.Layout == nil {
		return nil, errors.New("plan record has no layout")
	}
	if r.Images == nil {
		r.Images = map[string]ImageRecord{}
	}
	return &r, nil
}

// Clone returns a deep copy of the record, so that a reload can change its copy's layout
// and keep the one it read for comparison.
func (r *Record) Clone() (*Record, error) {
	data, err := r.Encode()
	if err != nil {
		return nil, err
	}
	return DecodeRecord(data)
}
