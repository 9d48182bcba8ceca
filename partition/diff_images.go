package partition

import (
	"path"
	"strings"
)

// images compares the images: the new plan's in order, then the ones it removes.
func (d *differ) images() {
	seen := map[string]bool{}
	for _, im := range d.next.Images {
		seen[im.Name] = true
		d.imgs = append(d.imgs, d.imageChange(d.old.Image(im.Name), im))
	}
	for _, im := range d.oldL.Images {
		if !seen[im.Name] {
			c := ImageChange{Name: im.Name, Action: ImageRemoved, From: d.deployed(im)}
			c.NeedsReboot = d.running(im.Name)
			d.imgs = append(d.imgs, c)
		}
	}
}

// imageChange compares the planned image im with old, the deployed one of its name (nil
// for none). An image is unchanged when its image_uuid and image_name are the same and
// its digest is: the new digest equals the recorded one, or, when either is not known,
// the spec's url and checksum are the ones deployed. An image whose boot entry says a
// reload did not end is never unchanged.
func (d *differ) imageChange(old, im *Image) ImageChange {
	to := &ImageVersion{ImageName: im.ImageName, ImageUUID: im.ImageUUID, Digest: d.newDigest(im), URL: im.URL}
	c := ImageChange{Name: im.Name, To: to}
	if old == nil {
		c.Action = ImageAdded
		return c
	}
	from := d.deployed(old)
	c.From = from
	sameSpec := old.URL == im.URL && old.Checksum == im.Checksum && old.Format == im.Format
	sameContent := from.Digest != "" && to.Digest != "" && from.Digest == to.Digest ||
		(from.Digest == "" || to.Digest == "") && sameSpec
	same := sameContent && from.ImageUUID == to.ImageUUID && from.ImageName == to.ImageName
	if e := d.entry(im.Name); e != nil && e.State != "" {
		same = false
		c.Note = "its boot entry says a reload was " + e.State
	}
	if same {
		c.Action = ImageUnchanged
		c.NoOp = !sameSpec
		if c.NoOp {
			c.Note = "the spec's entry changed, the image did not: same image_uuid and digest"
		}
		return c
	}
	c.Action = ImageUpdated
	a, b := versionLabels(from, to)
	c.Downgrade = CompareVersions(a, b) > 0
	c.NeedsReboot = d.running(im.Name)
	c.Recreates = d.recreates(im.Name)
	return c
}

// recreates lists the filesystems the reload of the image name makes anew in the new
// plan, as "<mount> on <device>".
func (d *differ) recreates(name string) []string {
	rp, err := PlanReload(d.next, name)
	if err != nil {
		return nil // the image is in the plan: PlanReload finds it
	}
	var out []string
	for _, fs := range rp.Recreate {
		out = append(out, orDash(fs.Mount)+" on "+fs.Device)
	}
	return out
}

// deployed returns the deployed image's version: the record's image and digest, the
// boot entry's digest when the record has none.
func (d *differ) deployed(im *Image) *ImageVersion {
	v := &ImageVersion{ImageName: im.ImageName, ImageUUID: im.ImageUUID, Digest: d.old.Images[im.Name].Digest, URL: im.URL}
	if e := d.entry(im.Name); v.Digest == "" && e != nil {
		v.Digest = e.Digest
	}
	return v
}

// newDigest returns the planned image's digest: the caller's, else the spec's checksum
// when it is a digest ("sha256:<hex>", not the address of a checksum file), else "".
func (d *differ) newDigest(im *Image) string {
	if dg := d.digests[im.Name]; dg != "" {
		return dg
	}
	algo, hex, ok := strings.Cut(im.Checksum, ":")
	switch strings.ToLower(algo) {
	case "md5", "sha256", "sha512":
		if ok && !strings.Contains(hex, "/") {
			return strings.ToLower(algo) + ":" + strings.ToLower(strings.TrimSpace(hex))
		}
	}
	return ""
}

// entry returns the boot entry of the image name, or nil.
func (d *differ) entry(name string) *BootEntry {
	for i := range d.cur.Entries {
		if d.cur.Entries[i].Name == name {
			return &d.cur.Entries[i]
		}
	}
	return nil
}

// running reports whether the image name is what runs now: the booted image, or the
// default one when which one booted is not known. Updating or removing it needs a
// reboot to take effect.
func (d *differ) running(name string) bool {
	if d.cur.Booted != "" {
		return d.cur.Booted == name
	}
	return d.defaultBefore() == name
}

// defaultBefore is the image booting by default now: boot-info's, else the record's.
func (d *differ) defaultBefore() string {
	if d.cur.Default != "" {
		return d.cur.Default
	}
	return d.oldL.BootImage
}

// boot compares the boot menu: an entry per whole-OS image (target "/"). The default
// after the update is the new spec's boot image when the spec changed it or the current
// default is removed; otherwise the current default stays (a switch-default made since
// the deploy is kept).
func (d *differ) boot() {
	bc := BootChange{DefaultBefore: d.defaultBefore()}
	had := map[string]bool{}
	for _, im := range d.oldL.Images {
		had[im.Name] = im.Target == "/"
	}
	has := map[string]bool{}
	for _, im := range d.next.Images {
		has[im.Name] = im.Target == "/"
		switch {
		case has[im.Name] && !had[im.Name]:
			bc.Added = append(bc.Added, im.Name)
		case has[im.Name] && d.updated(im.Name):
			bc.Changed = append(bc.Changed, im.Name)
		}
	}
	for _, im := range d.oldL.Images {
		if had[im.Name] && !has[im.Name] {
			bc.Removed = append(bc.Removed, im.Name)
		}
	}
	bc.DefaultAfter = bc.DefaultBefore
	if d.next.BootImage != d.oldL.BootImage || !has[bc.DefaultBefore] {
		bc.DefaultAfter = d.next.BootImage
	}
	d.bootc = bc
}

// updated reports whether the image name is updated.
func (d *differ) updated(name string) bool {
	for _, c := range d.imgs {
		if c.Name == name {
			return c.Action == ImageUpdated
		}
	}
	return false
}

// versionLabels are what two images' versions are read from: their image_names when
// both have one, else the file names of their URLs.
func versionLabels(from, to *ImageVersion) (string, string) {
	if from == nil || to == nil {
		return "", ""
	}
	if from.ImageName != "" && to.ImageName != "" {
		return from.ImageName, to.ImageName
	}
	return path.Base(from.URL), path.Base(to.URL)
}
