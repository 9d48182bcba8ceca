package schema

import (
	"fmt"
	"path"
	"strconv"
	"strings"
	"unicode/utf8"
)

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
			key := raidGroup(v)
			if _, ok := groups[key]; !ok {
				order = append(order, key)
			}
			groups[key] = append(groups[key], member{v, Ptr("/partitions", i, "volumes", j), i})
		}
	}
	for _, key := range order {
		ms := groups[key]
		first := ms[0]
		name := later(func() string { return raidLabel(first.v) })
		disks := map[int]string{}
		for _, m := range ms {
			if prev, ok := disks[m.disk]; ok {
				c.errf(m.ptr, "raid %q has two members on one disk (%s and this one): raid1 across one disk protects nothing", name, prev)
			}
			disks[m.disk] = m.ptr
			if m.v == first.v {
				continue
			}
			if m.v.FileSystem != first.v.FileSystem {
				c.errf(m.ptr+"/file_system", "raid %q members disagree: %q here, %q at %s", name, m.v.FileSystem, brief(first.v.FileSystem), first.ptr)
			}
			if m.v.Name != "" && first.v.Name != "" && RAIDName(m.v) != RAIDName(first.v) {
				c.errf(m.ptr+"/name", "raid %q members disagree on the md name: %q here, %q at %s", name, m.v.Name, brief(first.v.Name), first.ptr)
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

// raidGroup groups as RAIDKey does, naming the images by index: the name of the first
// image is in the key of every volume without an "images" list, and may be long.
func raidGroup(v *Volume) string {
	m := v.Mount
	if m == "" {
		m = "swap"
	}
	b := []byte(m)
	for _, i := range v.boundIdx {
		b = append(b, 0)
		b = strconv.AppendInt(b, int64(i), 10)
	}
	return string(b)
}

// raidLabel is RAIDKey with long names shortened, for messages.
func raidLabel(v *Volume) string {
	m := v.Mount
	if m == "" {
		m = "swap"
	}
	names := make([]string, len(v.Bound))
	for i, n := range v.Bound {
		names[i] = brief(n)
	}
	return brief(m) + " (" + strings.Join(names, ", ") + ")"
}

// checkBindings checks each image's mount set: one volume per mount point, and a volume
// mounted at the image's target.
func (c *checker) checkBindings() {
	mounts := map[int]map[string]string{} // image index -> mount -> first volume ptr
	skipped := map[int]map[string]bool{}  // image index -> mounts of skipped volumes
	raidSeen := map[string]bool{}
	for i := range c.spec.Partitions {
		st := &c.spec.Partitions[i]
		for j := range st.Volumes {
			v := &st.Volumes[j]
			ptr := Ptr("/partitions", i, "volumes", j)
			if v.Mount == "" || v.Mount == "swap" || !volumeHoldsFS(st.Type, v.Type) {
				continue
			}
			if v.Skipped() {
				// A volume of size zero is not made, so it takes no mount point from
				// another volume; it still counts as the image's target, as it did
				// before sizes of zero were left out of this check.
				for _, im := range v.boundIdx {
					if skipped[im] == nil {
						skipped[im] = map[string]bool{}
					}
					skipped[im][v.Mount] = true
				}
				continue
			}
			if v.Type == VolRAID {
				// The members of one array are one filesystem.
				key := raidGroup(v)
				if raidSeen[key] {
					continue
				}
				raidSeen[key] = true
			}
			for k, im := range v.boundIdx {
				if mounts[im] == nil {
					mounts[im] = map[string]string{}
				}
				if first, dup := mounts[im][v.Mount]; dup {
					c.errf(ptr+"/mount", "image %q already has a volume mounted at %q (%s)", brief(v.Bound[k]), v.Mount, first)
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
		idx := c.imageIdx[im.Name]
		if _, ok := mounts[idx][im.Target]; !ok && !skipped[idx][im.Target] {
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
		c.warnf("/image_deploy_flags", "accepted for Bareon compatibility; rsync_flags has no effect: streamed images take no rsync options, and rsync sources are copied with fixed ones")
	}
	c.checkRamdisk()
	for _, s := range []struct {
		sz   *Size
		ptr  string
		min  uint64
		why  string
		used bool
	}{
		{c.spec.MultibootSize, "/multiboot_size", 32 * MiB, "it holds grub's modules for both firmware types", c.spec.Multiboot()},
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

// listOf lists items for a message, or nothing when there are none. The list is cut
// short, as are long items: such messages repeat for every bad reference, and must not
// repeat the whole document each time.
func listOf(prefix string, items []string, suffix string) string {
	if len(items) == 0 {
		return ""
	}
	const most = 8
	shown := make([]string, 0, min(len(items), most))
	for _, it := range items[:min(len(items), most)] {
		shown = append(shown, brief(it))
	}
	if len(items) > most {
		shown = append(shown, fmt.Sprintf("and %d more", len(items)-most))
	}
	return prefix + strings.Join(shown, ", ") + suffix
}

// brief shortens a value quoted in a message about another element (a name declared
// elsewhere): each element's own values appear in its own messages, so the answer stays
// proportional to the document, but a value repeated in the messages of others would not.
func brief(s string) string {
	const most = 64
	if len(s) <= most {
		return s
	}
	cut := most - len("…")
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
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

// diskKey is equal for two disk ids that name the same disk: "vda" and "/dev/vda" name
// the same disk, whether given as a name or a path (both resolve to the same device).
type diskKey struct {
	typ, value string // typ is "" for a device node (name or path)
}

func keyOf(d DiskID) diskKey {
	if d.Type == "name" || d.Type == "path" {
		return diskKey{"", strings.TrimPrefix(strings.TrimPrefix(d.Value, "/dev/"), "disk/")}
	}
	return diskKey{d.Type, d.Value}
}
