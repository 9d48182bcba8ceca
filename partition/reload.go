package partition

import (
	"encoding/json"
	"fmt"

	"github.com/provisioner/provisioner/schema"
)

// ReloadPlan is the smaller plan a reload of one image applies: the recorded layout under
// the verify policy, with every filesystem kept except the image's own. Applying it
// compares the disks with the record and re-creates only those filesystems, with their
// recorded UUIDs and labels, so the other images' fstabs and the boot menu keep working.
type ReloadPlan struct {
	// Layout is a copy of the recorded layout, changed as described above.
	Layout *Layout
	// Image is Layout's image being reloaded.
	Image *Image
	// Recreate lists the filesystems made anew, in the order of FilesystemDevices.
	Recreate []*Filesystem
	// Kept lists the image's mounts whose filesystems keep their data, with why.
	Kept []KeptMount
}

// KeptMount is a filesystem an image mounts that its reload does not re-create.
type KeptMount struct {
	Path   string
	UUID   string
	Reason string // "keep_data", or "shared with <images>"
}

// PlanReload builds the ReloadPlan of image (its name in the spec) from the recorded
// layout, which it does not change. It is pure: the disks are compared with it when the
// plan is applied.
func PlanReload(recorded *Layout, image string) (*ReloadPlan, error) {
	l, err := cloneLayout(recorded)
	if err != nil {
		return nil, err
	}
	var im *Image
	for _, x := range l.Images {
		if x.Name == image {
			im = x
		}
	}
	if im == nil {
		return nil, fmt.Errorf("the plan record has no image %q", image)
	}
	l.Policy = schema.PolicyVerify
	p := &ReloadPlan{Layout: l, Image: im}
	mounted := map[string]string{}
	for _, m := range im.Mounts {
		mounted[m.FSUUID] = m.Path
	}
	for _, fs := range l.Filesystems() {
		path, mine := mounted[fs.UUID]
		switch {
		case !mine:
			fs.KeepData = true
		case fs.KeepData:
			p.Kept = append(p.Kept, KeptMount{Path: path, UUID: fs.UUID, Reason: "keep_data"})
		case len(fs.Images) != 1 || fs.Images[0] != image:
			fs.KeepData = true
			p.Kept = append(p.Kept, KeptMount{Path: path, UUID: fs.UUID, Reason: fmt.Sprintf("shared with %v", others(fs.Images, image))})
		default:
			p.Recreate = append(p.Recreate, fs)
		}
	}
	return p, nil
}

// others lists names without name.
func others(names []string, name string) []string {
	var out []string
	for _, n := range names {
		if n != name {
			out = append(out, n)
		}
	}
	return out
}

// cloneLayout returns a deep copy of l. The copy's Multiboot and ESP are the same
// objects as the partitions' filesystems they describe, as in a fresh plan.
func cloneLayout(l *Layout) (*Layout, error) {
	data, err := json.Marshal(l)
	if err != nil {
		return nil, fmt.Errorf("copying the layout: %w", err)
	}
	var c Layout
	if err := json.Unmarshal(data, &c); err != nil {
		return nil, fmt.Errorf("copying the layout: %w", err)
	}
	for _, fs := range c.Filesystems() {
		if c.Multiboot != nil && fs.UUID == c.Multiboot.UUID {
			c.Multiboot = fs
		}
		if c.ESP != nil && fs.UUID == c.ESP.UUID {
			c.ESP = fs
		}
	}
	return &c, nil
}
