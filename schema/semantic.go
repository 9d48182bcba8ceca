package schema

import (
	"encoding/json"
	"fmt"
	"math/big"
	"strings"
)

// checker runs the rules a JSON Schema cannot express: cross references, per-image mount
// sets, the size grammar, counts per disk. It also fills the derived fields of the spec.
type checker struct {
	spec  *Spec
	errs  []finding
	warns []finding

	imageIdx map[string]int      // image name -> index
	vgIdx    map[string]int      // vg id -> index in partitions
	diskIdx  map[diskKey]int     // disk -> index in partitions of its first declaration
	pvCount  map[string]int      // vg id -> number of pvs referring to it
	guids    map[string]*guidUse // partition_guid (upper case) -> its first use
}

// finding is a problem whose message is formatted only when it is reported. A document
// within the bounds can still have tens of thousands of findings (every name of every
// volume's images list unknown, say), of which only the first maxProblems are shown.
type finding struct {
	ptr    string
	format string
	args   []any
}

func (f finding) problem() Problem { return Problem{f.ptr, fmt.Sprintf(f.format, f.args...)} }

// found wraps a problem whose message is already made.
func found(p Problem) finding { return finding{p.Pointer, "%s", []any{p.Message}} }

// later defers building part of a message (a list of names) until it is formatted.
type later func() string

func (l later) String() string { return l() }

func (c *checker) errf(ptr, format string, args ...any) {
	c.errs = append(c.errs, finding{ptr, format, args})
}

func (c *checker) warnf(ptr, format string, args ...any) {
	c.warns = append(c.warns, finding{ptr, format, args})
}

func (c *checker) run() {
	c.impliedPolicy()
	c.checkImages()
	c.indexVGs()
	c.diskIdx = map[diskKey]int{}
	disks := 0
	for i := range c.spec.Partitions {
		st := &c.spec.Partitions[i]
		ptr := Ptr("/partitions", i)
		switch st.Type {
		case KindDisk:
			disks++
			c.checkDisk(st, i, ptr)
		case KindVG:
			c.checkVG(st, ptr)
		case VolPartition, VolBoot, VolPV, VolRAID, VolLV, VolLVMMetaPool:
			c.errf(ptr, "%q is a volume, not a disk or vg: put it in the \"volumes\" list of a disk (or, for an lv, of a vg)", st.Type)
		}
	}
	if disks == 0 && len(c.spec.Partitions) > 0 {
		c.errf("/partitions", "no entry of type \"disk\": at least one disk is needed")
	}
	for name, i := range c.vgIdx {
		if c.pvCount[name] == 0 {
			c.errf(Ptr("/partitions", i), "volume group %q has no pv: add {\"type\": \"pv\", \"vg\": %q, ...} to a disk's volumes", name, name)
		}
	}
	c.checkRAIDGroups()
	c.checkBindings()
	c.checkTopLevel()
	c.checkDeployData()
	sortFindings(c.errs)
	sortFindings(c.warns)
}

func (c *checker) checkImages() {
	c.imageIdx = map[string]int{}
	bootFirst := -1
	for i := range c.spec.Images {
		im := &c.spec.Images[i]
		ptr := Ptr("/images", i)
		if j, dup := c.imageIdx[im.Name]; dup {
			c.errf(ptr+"/name", "image name %q is already used by %s", im.Name, Ptr("/images", j))
		} else if im.Name != "" {
			c.imageIdx[im.Name] = i
		}
		if im.URL != "" && im.ImagePullURL != "" && im.URL != im.ImagePullURL {
			c.errf(ptr+"/url", "url %q and image_pull_url %q disagree: give one of them", im.URL, im.ImagePullURL)
		}
		c.checkRsyncImage(im, ptr)
		if t, ok := cleanAbs(im.Target); ok {
			im.Target = t
		} else if im.Target != "" {
			c.errf(ptr+"/target", "target %q must be an absolute path without \"..\"", im.Target)
		}
		if im.NodeTools.On && !im.IsRoot() && im.Target != "" {
			c.warnf(ptr+"/node_tools", "image %q is deployed at %q, not \"/\": a utility image is never booted, so node_tools is ignored", im.Name, im.Target)
		}
		if fl := im.NodeTools.FleetLock; fl != nil {
			if why := fleetlockURLProblem(fl.URL); why != "" {
				c.errf(ptr+"/node_tools/fleetlock/url", "%q: %s: want the http:// or https:// base URL of a FleetLock server", brief(fl.URL), why)
			}
		}
		if im.Boot {
			switch {
			case !im.IsRoot():
				c.errf(ptr+"/boot", "image %q is deployed at %q, not \"/\": only a whole OS can boot", im.Name, im.Target)
			case bootFirst >= 0:
				c.errf(ptr+"/boot", "more than one image has boot: true (the first is %s)", Ptr("/images", bootFirst))
			default:
				bootFirst = i
			}
		}
	}
	if bootFirst < 0 && len(c.spec.Images) > 0 {
		for i := range c.spec.Images {
			if c.spec.Images[i].IsRoot() {
				c.warnf("/images", "no image has boot: true; %q (%s) boots by default", c.spec.Images[i].Name, Ptr("/images", i))
				break
			}
		}
	}
}

// checkRsyncImage rejects what has no meaning for an image that rsync copies as a tree:
// a checksum (it is of one stream of bytes) and a format (there is none to name).
func (c *checker) checkRsyncImage(im *Image, ptr string) {
	if !IsRsyncSource(im.Source()) {
		return
	}
	if im.Checksum != "" {
		c.errf(ptr+"/checksum", "image %q comes from rsync source %q, a tree: a checksum has no meaning for it (remove it)", im.Name, im.Source())
	}
	if im.Format != "" {
		c.errf(ptr+"/format", "image %q comes from rsync source %q, a tree: a format has no meaning for it (remove it)", im.Name, im.Source())
	}
}

func (c *checker) indexVGs() {
	c.vgIdx, c.pvCount = map[string]int{}, map[string]int{}
	for i := range c.spec.Partitions {
		st := &c.spec.Partitions[i]
		if st.Type != KindVG {
			continue
		}
		var name string
		if json.Unmarshal(st.RawID, &name) != nil || name == "" {
			continue // the schema reports the shape
		}
		st.VGName = name
		if j, dup := c.vgIdx[name]; dup {
			c.errf(Ptr("/partitions", i, "id"), "volume group %q is already declared at %s", name, Ptr("/partitions", j))
			continue
		}
		c.vgIdx[name] = i
	}
}

func (c *checker) checkDisk(st *Storage, i int, ptr string) {
	var id DiskID
	if json.Unmarshal(st.RawID, &id) == nil && id.Value != "" {
		st.DiskID = id
		if j, dup := c.diskIdx[keyOf(id)]; dup {
			c.errf(ptr+"/id", "disk %s is already declared at %s", id, Ptr("/partitions", j))
		} else {
			c.diskIdx[keyOf(id)] = i
		}
	}
	if st.Size != nil {
		if q, ok := c.size(st.Size, ptr+"/size"); ok && q.Kind != Absolute {
			c.errf(ptr+"/size", "a disk's size must be absolute, not %s", st.Size.Quote())
		}
	}
	for _, k := range []struct {
		raw  json.RawMessage
		name string
	}{{st.Extra, "extra"}, {st.FreeSpace, "free_space"}} {
		if k.raw != nil {
			c.warnf(ptr+"/"+k.name, "legacy Bareon key %q is ignored", k.name)
		}
	}
	cont := newContainer("disk", ptr)
	boots := ""
	for j := range st.Volumes {
		v := &st.Volumes[j]
		vptr := Ptr(ptr, "volumes", j)
		if v.Type != VolLVMMetaPool {
			cont.size(c, v.Size, vptr+"/size")
		}
		switch v.Type {
		case VolLVMMetaPool:
			c.warnf(vptr, "lvm_meta_pool is ignored: LVM metadata is sized per pv with lvm_meta_size")
			continue
		case VolPV:
			if _, ok := c.vgIdx[v.VG]; ok {
				c.pvCount[v.VG]++
			} else if v.VG != "" {
				c.errf(vptr+"/vg", "no volume group %q is declared%s", v.VG, later(func() string { return listOf(" (declared: ", c.vgNames(), ")") }))
			}
			if v.LVMMetaSize != nil {
				if q, ok := c.size(v.LVMMetaSize, vptr+"/lvm_meta_size"); ok && q.Kind != Absolute {
					c.errf(vptr+"/lvm_meta_size", "lvm_meta_size must be absolute, not %s", v.LVMMetaSize.Quote())
				}
			}
			if v.Images != nil {
				c.warnf(vptr+"/images", "a pv carries no filesystem, so it belongs to no image: images is ignored")
			}
			c.checkKeep(v.KeepData, vptr)
			continue
		case VolRAID:
			c.checkRAIDName(v, vptr)
		case VolBoot:
			if boots != "" {
				c.errf(vptr+"/type", "more than one boot volume on this disk (the first is %s)", boots)
			} else {
				boots = vptr
			}
		}
		c.checkPartitionGUID(v, vptr)
		c.checkFS(v, vptr)
	}
}

func (c *checker) checkVG(st *Storage, ptr string) {
	for _, k := range []struct {
		raw  json.RawMessage
		name string
	}{{st.MinSize, "min_size"}, {st.AllocateSize, "_allocate_size"}} {
		if k.raw != nil {
			c.warnf(ptr+"/"+k.name, "legacy Bareon key %q is ignored", k.name)
		}
	}
	if st.Label != "" {
		c.warnf(ptr+"/label", "a volume group has no label; %q is ignored", st.Label)
	}
	c.checkKeep(st.KeepData, ptr)
	cont := newContainer("volume group", ptr)
	names := map[string]string{}
	for j := range st.Volumes {
		v := &st.Volumes[j]
		vptr := Ptr(ptr, "volumes", j)
		cont.size(c, v.Size, vptr+"/size")
		if first, dup := names[v.Name]; dup && v.Name != "" {
			c.errf(vptr+"/name", "logical volume %q is already declared at %s", v.Name, first)
		} else {
			names[v.Name] = vptr
		}
		c.checkFS(v, vptr)
	}
}

// container tracks per-disk (or per-vg) size rules: one "remaining", percentages <= 100
// (summed exactly: 0.2% + 83.9% + 15.9% is 100%, not 100.00000000000001%).
type container struct {
	what, ptr string
	remaining string
	pct       *big.Rat
}

func newContainer(what, ptr string) *container {
	return &container{what: what, ptr: ptr, pct: new(big.Rat)}
}

func (ct *container) size(c *checker, s *Size, ptr string) {
	if s == nil {
		return
	}
	q, ok := c.size(s, ptr)
	if !ok {
		return
	}
	if (q.Kind == Absolute && q.Bytes == 0) || (q.Kind == Percent && q.Pct == 0) {
		c.warnf(ptr, "size %s: the volume is skipped", s.Quote())
	}
	switch q.Kind {
	case Remaining:
		if ct.remaining != "" {
			c.errf(ptr, "a second \"remaining\" in this %s (the first is %s)", ct.what, ct.remaining)
		} else {
			ct.remaining = ptr
		}
	case Percent:
		hundred := big.NewRat(100, 1)
		wasOver := ct.pct.Cmp(hundred) > 0
		ct.pct.Add(ct.pct, pctRat(q.Pct))
		if !wasOver && ct.pct.Cmp(hundred) > 0 {
			sum, _ := ct.pct.Float64()
			c.errf(ptr, "percentages in this %s add up to %g%%, more than 100%%", ct.what, sum)
		}
	}
}

// size parses s into s.Q, reporting a grammar error at ptr.
func (c *checker) size(s *Size, ptr string) (Quantity, bool) {
	q, err := ParseSize(s.Raw, s.IsNumber)
	if err != nil {
		c.errf(ptr, "%s", err.Error())
		return Quantity{}, false
	}
	s.Q, s.parsed = q, true
	return q, true
}

// labelMax is the longest label each mkfs accepts, in bytes.
var labelMax = map[string]int{"ext2": 16, "ext3": 16, "ext4": 16, "xfs": 12, "vfat": 11, "swap": 16}

// LabelMax is the longest label, in bytes, that the mkfs of fsType accepts.
func LabelMax(fsType string) int { return labelMax[fsType] }

// checkFS checks the filesystem fields shared by partitions, boot, raid members and lvs,
// and fills Bound and the normalised Mount.
func (c *checker) checkFS(v *Volume, ptr string) {
	c.checkKeep(v.KeepData, ptr)
	c.checkFSName(v, ptr)
	mount := strings.TrimSpace(v.Mount)
	switch {
	case mount == "" || strings.EqualFold(mount, "none"):
		v.Mount = ""
	case mount == "swap":
		if v.FileSystem != "swap" {
			c.errf(ptr+"/file_system", "mount \"swap\" needs file_system \"swap\"")
		}
	default:
		if m, ok := cleanAbs(mount); ok {
			v.Mount = m
		} else {
			c.errf(ptr+"/mount", "mount %q must be an absolute path without \"..\"", v.Mount)
		}
		if v.FileSystem == "" {
			c.errf(ptr+"/file_system", "required: the volume is mounted at %q", v.Mount)
		} else if v.FileSystem == "swap" {
			c.errf(ptr+"/mount", "a swap volume is mounted as \"swap\" (or \"none\"), not %q", v.Mount)
		}
	}
	if v.Label != "" && v.DiskLabel != "" && v.Label != v.DiskLabel {
		c.errf(ptr+"/label", "label %q and disk_label %q disagree: give one of them", v.Label, v.DiskLabel)
	}
	if lbl := v.FSLabel(); lbl != "" {
		key := "/label"
		if v.Label == "" {
			key = "/disk_label"
		}
		if v.FileSystem == "" {
			c.errf(ptr+key, "a label needs a file_system")
		} else if max := labelMax[v.FileSystem]; len(lbl) > max {
			c.errf(ptr+key, "label %q is %d bytes; %s allows at most %d", lbl, len(lbl), v.FileSystem, max)
		}
	}
	if v.MkfsOptions != "" && (v.FileSystem == "" || v.FileSystem == "swap") {
		c.errf(ptr+"/mkfs_options", "mkfs_options need a file_system other than swap")
	}
	if v.Images == nil {
		if len(c.spec.Images) > 0 {
			v.Bound = []string{c.spec.Images[0].Name}
			v.boundIdx = []int{0} // the first image is the first of its name
		}
		return
	}
	v.Bound, v.boundIdx = v.Bound[:0], nil
	for k, name := range v.Images {
		i, ok := c.imageIdx[name]
		if !ok {
			c.errf(Ptr(ptr, "images", k), "unknown image %q%s", name, later(func() string { return listOf(" (images: ", c.imageNames(), ")") }))
			continue
		}
		v.Bound = append(v.Bound, name)
		v.boundIdx = append(v.boundIdx, i)
	}
}

func (c *checker) checkKeep(keep bool, ptr string) {
	if keep && c.spec.Policy() == PolicyClean {
		c.errf(ptr+"/keep_data", "keep_data cannot apply: partitions_policy %q wipes every named disk (use \"verify\")", c.spec.Policy())
	}
}
