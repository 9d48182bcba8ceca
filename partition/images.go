package partition

import (
	"fmt"
	"sort"
	"strings"
	"text/tabwriter"
)

// Filesystems returns every planned filesystem in a stable order: partitions disk by
// disk, then md arrays, then logical volumes.
func (l *Layout) Filesystems() []*Filesystem {
	var out []*Filesystem
	for _, d := range l.Disks {
		for _, p := range d.Partitions {
			if p.FS != nil {
				out = append(out, p.FS)
			}
		}
	}
	for _, r := range l.RAIDs {
		if r.FS != nil {
			out = append(out, r.FS)
		}
	}
	for _, vg := range l.VGs {
		for _, lv := range vg.LVs {
			if lv.FS != nil {
				out = append(out, lv.FS)
			}
		}
	}
	return out
}

// planImages gives each image its mount set and fstab, and picks the boot image: the
// one with boot: true, else the first whole-OS image.
func (p *planner) planImages() {
	for i := range p.spec.Images {
		im := &p.spec.Images[i]
		if im.Boot {
			p.l.BootImage = im.Name
			break
		}
	}
	if p.l.BootImage == "" {
		for i := range p.spec.Images {
			if p.spec.Images[i].IsRoot() {
				p.l.BootImage = p.spec.Images[i].Name
				break
			}
		}
	}
	for i := range p.spec.Images {
		si := &p.spec.Images[i]
		p.l.Images = append(p.l.Images, &Image{
			Name: si.Name, URL: si.Source(), Target: si.Target, Boot: si.Name == p.l.BootImage,
			Checksum: si.Checksum, Format: si.Format, ImageUUID: si.ImageUUID, ImageName: si.ImageName,
			NodeTools: si.NodeTools.On && si.IsRoot(),
		})
		if si.NodeTools.On && si.IsRoot() {
			p.l.Images[len(p.l.Images)-1].NodeFleetLock = si.NodeTools.FleetLock
		}
	}
	p.l.renderImages()
}

// renderImages derives each image's root UUID, mounts and fstab from the filesystems.
// It runs again when the verify policy adopts the identities of kept filesystems.
func (l *Layout) renderImages() {
	all := l.Filesystems()
	for _, im := range l.Images {
		var mine []*Filesystem
		for _, fs := range all {
			if fs.Mount != "" && fs.BoundTo(im.Name) {
				mine = append(mine, fs)
			}
		}
		sortMounts(mine)
		im.Mounts, im.RootUUID = nil, ""
		for _, fs := range mine {
			// A volume the OS will not mount (swap, fstab_enabled: false) is not mounted
			// for the deploy either: files extracted onto it would be hidden from the
			// booted OS, which sees the directory underneath.
			if fs.Mount == "swap" || !fs.FstabEnabled {
				continue
			}
			im.Mounts = append(im.Mounts, Mount{Path: fs.Mount, Device: fs.Device, FSType: fs.Type, FSUUID: fs.UUID, Options: fs.FstabOptions})
			if fs.Mount == im.Target {
				im.RootUUID = fs.UUID
			}
		}
		im.Fstab = renderFstab(im.Name, mine)
	}
}

// sortMounts orders filesystems so that a mount point comes after every mount point
// above it ("/" before "/var" before "/var/log"), with swap last. Equal depths sort by
// path, so the order never depends on the spec's volume order.
func sortMounts(fss []*Filesystem) {
	depth := func(m string) int {
		if m == "swap" {
			return 1 << 30
		}
		if m == "/" {
			return 0
		}
		return strings.Count(m, "/")
	}
	sort.SliceStable(fss, func(i, j int) bool {
		di, dj := depth(fss[i].Mount), depth(fss[j].Mount)
		if di != dj {
			return di < dj
		}
		return fss[i].Mount < fss[j].Mount
	})
}

// renderFstab writes an image's /etc/fstab: UUID= sources, fsck pass 1 for "/", 2 for
// other filesystems and 0 for swap; volumes with fstab_enabled: false are written
// commented out, so an operator sees them and can enable them by hand.
func renderFstab(image string, fss []*Filesystem) string {
	var b strings.Builder
	fmt.Fprintf(&b, "# /etc/fstab of image %q, written by provisioner.\n", image)
	tw := tabwriter.NewWriter(&b, 0, 8, 1, ' ', 0)
	fmt.Fprintln(tw, "# <file system>\t<mount point>\t<type>\t<options>\t<dump>\t<pass>")
	for _, fs := range fss {
		mount, pass := fs.Mount, 2
		switch fs.Mount {
		case "/":
			pass = 1
		case "swap":
			mount, pass = "none", 0
		}
		prefix := ""
		if !fs.FstabEnabled {
			prefix = "#"
		}
		fmt.Fprintf(tw, "%sUUID=%s\t%s\t%s\t%s\t0\t%d\n", prefix, fs.UUID, mount, fs.Type, fs.FstabOptions, pass)
	}
	tw.Flush()
	return b.String()
}
