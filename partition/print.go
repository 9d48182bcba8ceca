package partition

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/provisioner/provisioner/schema"
)

// WriteTable prints a layout for people: one table per disk (partition, sectors, size,
// type, filesystem, mount, images), then md arrays, volume groups and each image's mounts
// and fstab.
func (l *Layout) WriteTable(w io.Writer) error {
	ew := &errWriter{w: w}
	fmt.Fprintf(ew, "plan seed %s, boot mode %s, partitions policy %s, default boot image %q\n", l.Seed, l.BootMode, l.Policy, l.BootImage)
	for _, d := range l.Disks {
		src := "simulated"
		if d.Path != "" {
			src = d.Path
		}
		fmt.Fprintf(ew, "\ndisk %s (%s): %s, %d sectors of %d bytes, GUID %s\n", d.ID, src, schema.HumanBytes(d.SizeBytes), d.Sectors, d.SectorSize, d.GUID)
		tw := tabwriter.NewWriter(ew, 0, 8, 2, ' ', 0)
		fmt.Fprintln(tw, "  #\tSTART\tEND\tSIZE\tTYPE\tFS\tMOUNT\tIMAGES\tNAME")
		for _, p := range d.Partitions {
			fsType, mount, images := "-", "-", "-"
			switch {
			case p.FS != nil:
				fsType, mount, images = p.FS.Type, orDash(p.FS.Mount), orDash(strings.Join(p.FS.Images, ","))
			case p.VG != "":
				fsType = "pv:" + p.VG
			case p.RAID != "":
				fsType = "raid:" + p.RAID
			}
			typ := p.TypeName
			if p.Attributes&AttrLegacyBoot != 0 {
				typ += " (legacy boot)"
			}
			fmt.Fprintf(tw, "  %d\t%d\t%d\t%s\t%s\t%s\t%s\t%s\t%s\n", p.Number, p.Start, p.End, schema.HumanBytes(p.SizeBytes), typ, fsType, mount, images, p.Name)
		}
		tw.Flush()
	}
	for _, r := range l.RAIDs {
		var members []string
		for _, m := range r.Members {
			members = append(members, fmt.Sprintf("%s#%d", m.Disk, m.Partition))
		}
		fmt.Fprintf(ew, "\nraid1 %s (%s): members %s, %s each", r.Device(), r.UUID, strings.Join(members, " "), schema.HumanBytes(r.MemberBytes))
		if r.FS != nil {
			fmt.Fprintf(ew, ", %s at %s for %s", r.FS.Type, orDash(r.FS.Mount), orDash(strings.Join(r.FS.Images, ",")))
		}
		fmt.Fprintln(ew)
	}
	for _, vg := range l.VGs {
		var pvs []string
		for _, pv := range vg.PVs {
			pvs = append(pvs, fmt.Sprintf("%s#%d (%d extents)", pv.Disk, pv.Partition, pv.Extents))
		}
		fmt.Fprintf(ew, "\nvolume group %s: %d extents of %s = %s on %s; %d extents free\n",
			vg.Name, vg.Extents, schema.HumanBytes(vg.ExtentSize), schema.HumanBytes(vg.Extents*vg.ExtentSize), strings.Join(pvs, ", "), vg.FreeExtents)
		tw := tabwriter.NewWriter(ew, 0, 8, 2, ' ', 0)
		fmt.Fprintln(tw, "  LV\tEXTENTS\tSIZE\tFS\tMOUNT\tIMAGES")
		for _, lv := range vg.LVs {
			fsType, mount, images := "-", "-", "-"
			if lv.FS != nil {
				fsType, mount, images = lv.FS.Type, orDash(lv.FS.Mount), orDash(strings.Join(lv.FS.Images, ","))
			}
			fmt.Fprintf(tw, "  %s\t%d\t%s\t%s\t%s\t%s\n", lv.Name, lv.Extents, schema.HumanBytes(lv.SizeBytes), fsType, mount, images)
		}
		tw.Flush()
	}
	for _, im := range l.Images {
		boot := ""
		if im.Boot {
			boot = ", boots by default"
		}
		fmt.Fprintf(ew, "\nimage %s -> %s (root filesystem %s%s)\n", im.Name, im.Target, orDash(im.RootUUID), boot)
		for _, m := range im.Mounts {
			fmt.Fprintf(ew, "  mount %s %s (%s %s)\n", m.Device, m.Path, m.FSType, m.FSUUID)
		}
		for _, line := range strings.Split(strings.TrimSuffix(im.Fstab, "\n"), "\n") {
			fmt.Fprintf(ew, "  | %s\n", line)
		}
	}
	return ew.err
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// errWriter remembers the first write error so the printing code stays linear.
type errWriter struct {
	w   io.Writer
	err error
}

func (e *errWriter) Write(p []byte) (int, error) {
	if e.err != nil {
		return 0, e.err
	}
	n, err := e.w.Write(p)
	e.err = err
	return n, err
}
