package partition

import (
	"errors"
	"fmt"
	"strings"

	"github.com/provisioner/provisioner/schema"
)

// Current is what is on the disks of a deployed node now, as the caller probed it. Diff
// compares the deploy's Record and a changed spec's plan with it, so that the break-down
// says what an update does to the disks as they are, not as they were planned.
type Current struct {
	// Disks holds every disk of the record and of the new plan, by the spec's disk id
	// value ("vda").
	Disks map[string]*CurrentDisk `json:"disks"`
	// LVs is every logical volume's size in bytes, keyed "vg/lv" (as lvm lvs reports).
	LVs map[string]uint64 `json:"lvs,omitempty"`
	// VGFree is each volume group's free space in bytes, by name.
	VGFree map[string]uint64 `json:"vg_free,omitempty"`
	// Entries are boot-info.json's elements.
	Entries []BootEntry `json:"entries,omitempty"`
	// Default is the name (os_id) of the image whose entry boots by default, "" when
	// not known (then the record's boot image is taken).
	Default string `json:"default,omitempty"`
	// Booted is the name (os_id) of the image now running, "" when not known (offline,
	// or in the deploy ramdisk).
	Booted string `json:"booted,omitempty"`
}

// CurrentDisk is one disk as it is: its size and its GPT.
type CurrentDisk struct {
	SizeBytes  uint64 `json:"size_bytes"`
	SectorSize uint64 `json:"sector_size"`
	// Table is the disk's GPT, nil when the disk has none.
	Table *ExistingTable `json:"table,omitempty"`
}

// BootEntry is one element of boot-info.json, with what Diff reads of it.
type BootEntry struct {
	GrubID    int    `json:"grub_id"`
	Name      string `json:"name"` // os_id: the image's name in the spec
	ImageName string `json:"image_name,omitempty"`
	ImageUUID string `json:"image_uuid,omitempty"`
	Digest    string `json:"digest,omitempty"`
	// State is "" for an image in place, else "reloading" or "failed" (a reload that did
	// not end): such an image is never unchanged.
	State string `json:"state,omitempty"`
}

// ErrRefused is matched (errors.Is) by every *RefusedError.
var ErrRefused = errors.New("update refused")

// RefusedError lists every reason a changed spec cannot be applied to the disks as they
// are, each naming the volume, the disk and the sizes, before anything is written.
type RefusedError struct {
	Problems []Refusal
}

// Refusal is one reason an update is refused.
type Refusal struct {
	// Volume is what the refusal is about ("vda#3", "os/data"), "" for the whole update.
	Volume string `json:"volume,omitempty"`
	Reason string `json:"reason"`
}

// String reads "<volume>: <reason>".
func (r Refusal) String() string {
	if r.Volume == "" {
		return r.Reason
	}
	return r.Volume + ": " + r.Reason
}

// Error lists every problem, one per line.
func (e *RefusedError) Error() string {
	lines := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		lines[i] = p.String()
	}
	return "update refused:\n" + strings.Join(lines, "\n")
}

// Is makes errors.Is(err, ErrRefused) true.
func (e *RefusedError) Is(target error) bool { return target == ErrRefused }

// Diff breaks down what applying next (the changed spec planned against the same disks)
// does to a node deployed with old, whose disks are now cur. digests holds the new
// images' digests ("sha256:<hex>") where the caller resolved their checksum files; an
// image missing from it uses its spec's checksum when that is a digest. Volumes are
// matched by disk and partition number, or volume group and logical volume name, and by
// what they hold (role, mount, volume group), never by UUID: the planner gives a kept
// volume the UUIDs the record has only when it is planned with the record's seed.
//
// A change the policy or keep_data forbids is a *RefusedError listing every problem; the
// break-down is returned with it, so that it can be printed. Diff reads no disk.
func Diff(old *Record, cur *Current, next *Layout, digests map[string]string) (*Breakdown, error) {
	return DiffWith(old, cur, next, digests, DiffOptions{})
}

// reasonNotInSpec is the reason of a volume destroyed because the spec dropped it.
const reasonNotInSpec = "not in the spec"

// DiffOptions change what a break-down does with volumes the spec dropped.
type DiffOptions struct {
	// RemoveData destroys the partitions and logical volumes of images the spec removed;
	// without it they are left alone (kept as they are, outside the spec), so that
	// removing an image from a spec never loses its data by itself.
	RemoveData bool
}

// DiffWith is Diff with options.
func DiffWith(old *Record, cur *Current, next *Layout, digests map[string]string, opt DiffOptions) (*Breakdown, error) {
	switch {
	case old == nil || old.Layout == nil:
		return nil, errors.New("diff: no record of the deployed layout")
	case next == nil:
		return nil, errors.New("diff: no plan of the changed spec")
	case cur == nil:
		return nil, errors.New("diff: no probe of the disks as they are")
	}
	d := &differ{old: old, oldL: old.Layout, cur: cur, next: next, digests: digests, fates: map[string]*VolumeChange{}, opt: opt}
	if err := d.partitions(); err != nil {
		return nil, err
	}
	d.raids()
	d.lvs()
	d.images()
	d.boot()
	d.policy()
	b := d.breakdown()
	if len(b.Refusals) > 0 {
		return b, &RefusedError{Problems: b.Refusals}
	}
	return b, nil
}

// differ holds the inputs and the findings of one Diff.
type differ struct {
	opt     DiffOptions
	old     *Record
	oldL    *Layout
	cur     *Current
	next    *Layout
	digests map[string]string
	vols    []*VolumeChange
	// fates maps a volume's name ("vda#3") to its change, for the volume groups on it.
	fates    map[string]*VolumeChange
	imgs     []ImageChange
	bootc    BootChange
	refusals []Refusal
	pictures []DiskPicture
}

// refuse records a refusal.
func (d *differ) refuse(volume, format string, args ...any) {
	d.refusals = append(d.refusals, Refusal{Volume: volume, Reason: fmt.Sprintf(format, args...)})
}

// add records a volume's change.
func (d *differ) add(v *VolumeChange) {
	d.vols = append(d.vols, v)
	if v.Kind == KindPartition && v.Action != ActionCreated {
		d.fates[v.Name] = v
	}
}

// breakdown assembles the findings.
func (d *differ) breakdown() *Breakdown {
	b := &Breakdown{
		Policy:     d.next.Policy,
		Disks:      d.pictures,
		Volumes:    derefVolumes(d.vols),
		Images:     d.imgs,
		Bootloader: d.bootc,
		Refusals:   d.refusals,
	}
	b.NothingToDo = b.nothing()
	b.Summary = b.summary()
	return b
}

// derefVolumes copies the volume changes into a slice of values.
func derefVolumes(vs []*VolumeChange) []VolumeChange {
	out := make([]VolumeChange, len(vs))
	for i, v := range vs {
		out[i] = *v
	}
	return out
}

// policy refuses what the new plan's partitions_policy cannot do in place. verify
// keeps the layout exactly: every other volume change is refused, naming it.
// nailgun_legacy with keep_data (which compares the disks first, as verify does) only
// adds volumes in free space and grows them into free space: a destroyed or re-created
// volume is refused. clean, and nailgun_legacy without keep_data, allow every change
// keep_data does not forbid; the break-down says which data is lost.
func (d *differ) policy() {
	exact := d.next.Policy == schema.PolicyVerify
	if !exact && !PolicyOf(d.next).ComparesFirst() {
		return
	}
	for _, v := range d.vols {
		switch {
		case exact && v.Action != ActionKept:
			d.refuse(v.Name, "would be %s; partitions_policy verify keeps the layout as it is (use clean to change it)", v.Action)
		case !exact && v.DataLost && !v.KeepData: // keepData has refused the others
			d.refuse(v.Name, "would be %s; partitions_policy %s with keep_data only adds volumes and grows them into free space", v.Action, d.next.Policy)
		}
	}
}

// orphan reports whether a volume holding fs, which the new plan drops, belongs only to
// images the new plan drops too: such a volume is left alone unless RemoveData.
func (d *differ) orphan(fs *Filesystem) bool {
	if d.opt.RemoveData || fs == nil || len(fs.Images) == 0 {
		return false
	}
	for _, name := range fs.Images {
		for _, im := range d.next.Images {
			if im.Name == name {
				return false
			}
		}
	}
	return true
}

// leaveAlone turns the destroyed volume v, whose images are all removed, into one the
// update leaves as it is.
func leaveAlone(v *VolumeChange, images []string) {
	v.Action, v.DataLost = ActionKept, false
	v.Reason = fmt.Sprintf("left alone: its image(s) %s left the spec (--remove-data destroys it)", strings.Join(images, ", "))
}
