package schema

import (
	"encoding/json"
	"fmt"
	"math/big"
	"path"
	"strings"
)

// checker runs the rules a JSON Schema cannot express: cross references, per-image mount
// sets, the size grammar, counts per disk. It also fills the derived fields of the spec.
type checker struct {
	spec  *Spec
	errs  []Problem
	warns []Problem

	imageIdx map[string]int // image name -> index
	vgIdx    map[string]int // vg id -> index in partitions
	pvCount  map[string]int // vg id -> number of pvs referring to it
}

func (c *checker) errf(ptr, format string, args ...any) {
	c.errs = append(c.errs, Problem{ptr, fmt.Sprintf(format, args...)})
}

func (c *checker) warnf(ptr, format string, args ...any) {
	c.warns = append(c.warns, Problem{ptr, fmt.Sprintf(format, args...)})
}

func (c *checker) run() {
	c.checkImages()
	c.indexVGs()
	disks := 0
	for i := range c.spec.Partitions {
		st := &c.spec.Partitions[i]
		ptr := Ptr("/partitions", i)
		switch st.Type {
		case KindDisk:
			disks++
			c.checkDisk(st, ptr)
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
	sortProblems(c.errs)
	sortProblems(c.warns)
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
		if t, ok := cleanAbs(im.Target); ok {
			im.Target = t
		} else if im.Target != "" {
			c.errf(ptr+"/target", "target %q must be an absolute path without \"..\"", im.Target)
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

func (c *checker) checkDisk(st *Storage, ptr string) {
	var id DiskID
	if json.Unmarshal(st.RawID, &id) == nil && id.Value != "" {
		st.DiskID = id
		for j := range c.spec.Partitions[:indexOf(c.spec.Partitions, st)] {
			other := &c.spec.Partitions[j]
			if other.Type == KindDisk && sameDisk(other.DiskID, id) {
				c.errf(ptr+"/id", "disk %s is already declared at %s", id, Ptr("/partitions", j))
				break
			}
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
				c.errf(vptr+"/vg", "no volume group %q is declared%s", v.VG, listOf(" (declared: ", c.vgNames(), ")"))
			}
			if v.LVMMetaSize != nil {
				if q, ok := c.size(v.LVMMetaSize, vptr+"/lvm_meta_size"); ok && q.Kind != Absolute {
					c.errf(vptr+"/lvm_meta_size", "lvm_meta_size must be absolute, not %s", v.LVMMetaSize.Quote())
				}
			}
			c.checkKeep(v.KeepData, vptr)
			continue
		case VolBoot:
			if boots != "" {
				c.errf(vptr+"/type", "more than one boot volume on this disk (the first is %s)", boots)
			} else {
				boots = vptr
			}
		}
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
	s.Q = q
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
		}
		return
	}
	v.Bound = v.Bound[:0]
	for k, name := range v.Images {
		if _, ok := c.imageIdx[name]; !ok {
			c.errf(Ptr(ptr, "images", k), "unknown image %q%s", name, listOf(" (images: ", c.imageNames(), ")"))
			continue
		}
		v.Bound = append(v.Bound, name)
	}
}

func (c *checker) checkKeep(keep bool, ptr string) {
	if keep && c.spec.Policy() == PolicyClean {
		c.errf(ptr+"/keep_data", "keep_data cannot apply: partitions_policy %q wipes every named disk (use \"verify\")", c.spec.Policy())
	}
}

// checkRAIDGroups groups raid volumes the way Bareon does (by mount, across disks) and
// checks that the members agree on what the array carries.
func (c *checker) checkRAIDGroups() {
	type member struct {
		v    *Volume
		ptr  string
		disk int
	}
	groups := map[string][]member{}
	var order []string
	for i := range c.spec.Partitions {
		st := &c.spec.Partitions[i]
		if st.Type != KindDisk {
			continue
		}
		for j := range st.Volumes {
			v := &st.Volumes[j]
			if v.Type != VolRAID || v.Mount == "" && v.FileSystem != "swap" {
				continue
			}
			key := RAIDKey(v)
			if _, ok := groups[key]; !ok {
				order = append(order, key)
			}
			groups[key] = append(groups[key], member{v, Ptr("/partitions", i, "volumes", j), i})
		}
	}
	for _, key := range order {
		ms := groups[key]
		first := ms[0]
		disks := map[int]string{}
		for _, m := range ms {
			if prev, ok := disks[m.disk]; ok {
				c.errf(m.ptr, "raid %q has two members on one disk (%s and this one): raid1 across one disk protects nothing", key, prev)
			}
			disks[m.disk] = m.ptr
			if m.v == first.v {
				continue
			}
			if m.v.FileSystem != first.v.FileSystem {
				c.errf(m.ptr+"/file_system", "raid %q members disagree: %q here, %q at %s", key, m.v.FileSystem, first.v.FileSystem, first.ptr)
			}
			if m.v.Name != "" && first.v.Name != "" && m.v.Name != first.v.Name {
				c.errf(m.ptr+"/name", "raid %q members disagree on the md name: %q here, %q at %s", key, m.v.Name, first.v.Name, first.ptr)
			}
		}
	}
}

// RAIDKey is what groups raid members into one array. Bareon groups them by mount alone,
// which merges two images' "/" arrays into one; the bound images are part of the key so
// each image gets its own array, and single-image documents group exactly as in Bareon.
func RAIDKey(v *Volume) string {
	m := v.Mount
	if m == "" {
		m = "swap"
	}
	return m + " (" + strings.Join(v.Bound, ", ") + ")"
}

// checkBindings checks each image's mount set: one volume per mount point, and a volume
// mounted at the image's target.
func (c *checker) checkBindings() {
	mounts := map[string]map[string]string{} // image -> mount -> first volume ptr
	raidSeen := map[string]bool{}
	for i := range c.spec.Partitions {
		st := &c.spec.Partitions[i]
		for j := range st.Volumes {
			v := &st.Volumes[j]
			ptr := Ptr("/partitions", i, "volumes", j)
			if v.Mount == "" || v.Mount == "swap" || !volumeHoldsFS(st.Type, v.Type) {
				continue
			}
			if v.Type == VolRAID {
				// The members of one array are one filesystem.
				if raidSeen[RAIDKey(v)] {
					continue
				}
				raidSeen[RAIDKey(v)] = true
			}
			for _, im := range v.Bound {
				if mounts[im] == nil {
					mounts[im] = map[string]string{}
				}
				if first, dup := mounts[im][v.Mount]; dup {
					c.errf(ptr+"/mount", "image %q already has a volume mounted at %q (%s)", im, v.Mount, first)
					continue
				}
				mounts[im][v.Mount] = ptr
			}
		}
	}
	for i, im := range c.spec.Images {
		if im.Name == "" || im.Target == "" {
			continue
		}
		if _, ok := mounts[im.Name][im.Target]; !ok {
			c.errf(Ptr("/images", i, "target"), "no volume bound to image %q is mounted at %q", im.Name, im.Target)
		}
	}
}

func volumeHoldsFS(storageType, volType string) bool {
	switch volType {
	case VolPartition, VolBoot, VolRAID:
		return storageType == KindDisk
	case VolLV:
		return storageType == KindVG
	}
	return false
}

func (c *checker) checkTopLevel() {
	if c.spec.ImageDeployFlags != nil {
		c.warnf("/image_deploy_flags", "accepted for Bareon compatibility; images are streamed, so rsync_flags has no effect")
	}
	roots := 0
	for _, im := range c.spec.Images {
		if im.IsRoot() {
			roots++
		}
	}
	for _, s := range []struct {
		sz   *Size
		ptr  string
		min  uint64
		why  string
		used bool
	}{
		{c.spec.MultibootSize, "/multiboot_size", 32 * MiB, "it holds grub's modules for both firmware types", roots >= 2},
		{c.spec.ESPSize, "/esp_size", 33 * MiB, "FAT32 needs 65525 clusters", c.spec.Mode() != BootBIOS},
	} {
		if s.sz == nil {
			continue
		}
		q, ok := c.size(s.sz, s.ptr)
		if !ok {
			continue
		}
		if q.Kind != Absolute {
			c.errf(s.ptr, "must be an absolute size, not %s", s.sz.Quote())
		} else if q.Bytes < s.min {
			c.errf(s.ptr, "%s is too small: at least %s, since %s", s.sz.Quote(), HumanBytes(s.min), s.why)
		}
		if !s.used {
			c.warnf(s.ptr, "ignored: this spec has no such partition")
		}
	}
}

func (c *checker) imageNames() []string {
	out := make([]string, len(c.spec.Images))
	for i, im := range c.spec.Images {
		out[i] = im.Name
	}
	return out
}

func (c *checker) vgNames() []string {
	var out []string
	for i := range c.spec.Partitions {
		if n := c.spec.Partitions[i].VGName; n != "" {
			out = append(out, n)
		}
	}
	return out
}

func listOf(prefix string, items []string, suffix string) string {
	if len(items) == 0 {
		return ""
	}
	return prefix + strings.Join(items, ", ") + suffix
}

// cleanAbs normalises an absolute path ("/var/" -> "/var") and refuses ".." components,
// which would make a mount escape the image root.
func cleanAbs(p string) (string, bool) {
	if !strings.HasPrefix(p, "/") {
		return "", false
	}
	for _, part := range strings.Split(p, "/") {
		if part == ".." {
			return "", false
		}
	}
	return path.Clean(p), true
}

func normMount(m string) string {
	if strings.EqualFold(strings.TrimSpace(m), "none") {
		return ""
	}
	return m
}

// sameDisk compares disk ids; "vda" and "/dev/vda" name the same disk, whether given as
// a name or a path (both resolve to the same device).
func sameDisk(a, b DiskID) bool {
	devNode := func(d DiskID) bool { return d.Type == "name" || d.Type == "path" }
	norm := func(d DiskID) string {
		if devNode(d) {
			return strings.TrimPrefix(strings.TrimPrefix(d.Value, "/dev/"), "disk/")
		}
		return d.Value
	}
	return (a.Type == b.Type || devNode(a) && devNode(b)) && norm(a) == norm(b)
}

func indexOf(list []Storage, st *Storage) int {
	for i := range list {
		if &list[i] == st {
			return i
		}
	}
	return len(list)
}
