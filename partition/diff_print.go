package partition

import (
	"encoding/json"
	"fmt"
	"io"
	"path"
	"strings"
	"text/tabwriter"

	"github.com/provisioner/provisioner/schema"
)

// summary is the one-line summary: the images and volumes by what happens to them,
// whether data is lost, which images need a reboot, and the refusals first.
func (b *Breakdown) summary() string {
	if b.NothingToDo && len(b.Refusals) == 0 {
		return fmt.Sprintf("nothing to do: %s unchanged, %s kept", count(len(b.Images), "image"), count(len(b.Volumes), "volume"))
	}
	var parts []string
	if n := len(b.Refusals); n > 0 {
		parts = append(parts, "REFUSED: "+count(n, "problem"))
	}
	ims := map[ImageAction]int{}
	var reboot, noop, down []string
	for _, im := range b.Images {
		ims[im.Action]++
		if im.NeedsReboot {
			reboot = append(reboot, im.Name)
		}
		if im.NoOp {
			noop = append(noop, im.Name)
		}
		if im.Downgrade {
			down = append(down, im.Name)
		}
	}
	parts = append(parts, count(len(b.Images), "image")+": "+tally(ims, ImageUpdated, ImageAdded, ImageRemoved, ImageUnchanged))
	vols := map[VolumeAction]int{}
	lost := 0
	for _, v := range b.Volumes {
		vols[v.Action]++
		if v.DataLost {
			lost++
		}
	}
	parts = append(parts, count(len(b.Volumes), "volume")+": "+tally(vols, ActionCreated, ActionGrown, ActionRecreated, ActionDestroyed, ActionKept))
	if lost == 0 {
		parts = append(parts, "nothing destroyed")
	} else {
		parts = append(parts, fmt.Sprintf("DATA LOST on %s", count(lost, "volume")))
	}
	if bc := b.Bootloader; bc.DefaultBefore != bc.DefaultAfter {
		parts = append(parts, fmt.Sprintf("default %s -> %s", orDash(bc.DefaultBefore), orDash(bc.DefaultAfter)))
	}
	parts = appendNamed(parts, "no-op", noop)
	parts = appendNamed(parts, "downgrade", down)
	parts = appendNamed(parts, "reboot needed", reboot)
	return strings.Join(parts, "; ")
}

// appendNamed appends "what (names)" when there are names.
func appendNamed(parts []string, what string, names []string) []string {
	if len(names) == 0 {
		return parts
	}
	return append(parts, what+" ("+strings.Join(names, ", ")+")")
}

// tally reads "1 updated, 2 unchanged" in the order of keys, leaving out zeros.
func tally[K ~string](counts map[K]int, keys ...K) string {
	var out []string
	for _, k := range keys {
		if counts[k] > 0 {
			out = append(out, fmt.Sprintf("%d %s", counts[k], k))
		}
	}
	if len(out) == 0 {
		return "none"
	}
	return strings.Join(out, ", ")
}

// count reads "1 image", "2 images".
func count(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}

// WriteJSON writes the break-down as indented JSON with a trailing newline.
func (b *Breakdown) WriteJSON(w io.Writer) error {
	data, err := json.MarshalIndent(b, "", "  ")
	if err != nil {
		return fmt.Errorf("encoding the break-down: %w", err)
	}
	_, err = w.Write(append(data, '\n'))
	return err
}

// WriteText prints the break-down for people: the summary, each disk's bars before and
// after, the volumes, the images, the boot menu and the refusals.
func (b *Breakdown) WriteText(w io.Writer) error {
	ew := &errWriter{w: w}
	fmt.Fprintf(ew, "%s\n", b.Summary)
	fmt.Fprintf(ew, "\npartitions policy %s\n", b.Policy)
	for _, d := range b.Disks {
		fmt.Fprintf(ew, "\ndisk %s (%s)\n  before %s\n  after  %s\n", d.Disk, schema.HumanBytes(d.SizeBytes), d.Before, d.After)
	}
	if len(b.Disks) > 0 {
		fmt.Fprintf(ew, "  %s\n", PictureLegend)
	}
	b.writeVolumes(ew)
	b.writeImages(ew)
	bc := b.Bootloader
	fmt.Fprintf(ew, "\nbootloader\n  entries added: %s\n  entries removed: %s\n  entries changed: %s\n  default: %s -> %s\n",
		orDash(strings.Join(bc.Added, ", ")), orDash(strings.Join(bc.Removed, ", ")), orDash(strings.Join(bc.Changed, ", ")),
		orDash(bc.DefaultBefore), orDash(bc.DefaultAfter))
	if len(b.Refusals) > 0 {
		fmt.Fprintf(ew, "\nrefused, nothing is written:\n")
		for _, r := range b.Refusals {
			fmt.Fprintf(ew, "  - %s\n", r)
		}
	}
	return ew.err
}

// writeVolumes prints the volumes' table.
func (b *Breakdown) writeVolumes(w io.Writer) {
	if len(b.Volumes) == 0 {
		return
	}
	fmt.Fprintf(w, "\nvolumes\n")
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "  VOLUME\tACTION\tSIZE\tROLE\tFS\tMOUNT\tIMAGES\tNOTE")
	for _, v := range b.Volumes {
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", v.Name, v.Action, sizeText(v), orDash(string(v.Role)),
			orDash(v.FSType), orDash(v.Mount), orDash(strings.Join(v.Images, ",")), volumeNote(v))
	}
	tw.Flush()
}

// sizeText reads "5 GiB", or "1 GiB -> 2 GiB" when the size changes.
func sizeText(v VolumeChange) string {
	switch {
	case v.FromBytes == 0:
		return schema.HumanBytes(v.ToBytes)
	case v.ToBytes == 0 || v.ToBytes == v.FromBytes:
		return schema.HumanBytes(v.FromBytes)
	}
	return schema.HumanBytes(v.FromBytes) + " -> " + schema.HumanBytes(v.ToBytes)
}

// volumeNote says why a volume changes, whether its data is lost and whether keep_data
// keeps it.
func volumeNote(v VolumeChange) string {
	var notes []string
	if v.Reason != "" {
		notes = append(notes, v.Reason)
	}
	if v.Action == ActionGrown {
		notes = append(notes, "in place")
	}
	switch {
	case v.DataLost:
		notes = append(notes, "DATA LOST")
	case v.KeepData && v.Action != ActionCreated:
		notes = append(notes, "keep_data: data kept")
	}
	return orDash(strings.Join(notes, "; "))
}

// writeImages prints the images' table.
func (b *Breakdown) writeImages(w io.Writer) {
	if len(b.Images) == 0 {
		return
	}
	fmt.Fprintf(w, "\nimages\n")
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "  IMAGE\tACTION\tFROM\tTO\tNOTE")
	for _, im := range b.Images {
		var notes []string
		if im.Note != "" {
			notes = append(notes, im.Note)
		}
		if im.NoOp {
			notes = append(notes, "NO-OP: refused without --force")
		}
		if im.Downgrade {
			notes = append(notes, "DOWNGRADE: refused without --force")
		}
		if len(im.Recreates) > 0 {
			notes = append(notes, "re-creates "+strings.Join(im.Recreates, ", "))
		}
		if im.NeedsReboot {
			notes = append(notes, "needs a reboot")
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\n", im.Name, im.Action, versionText(im.From), versionText(im.To), orDash(strings.Join(notes, "; ")))
	}
	tw.Flush()
}

// versionText reads "CentOS 7 [uuid 8f6c5f4e, sha256:9f86d0818840]": the image_name (or
// the URL's file name), the image_uuid's first 8 characters and the digest's first 12
// hex digits; "-" for none.
func versionText(v *ImageVersion) string {
	if v == nil {
		return "-"
	}
	name := v.ImageName
	if name == "" {
		name = path.Base(v.URL)
	}
	digest := "no digest"
	if v.Digest != "" {
		algo, hex, _ := strings.Cut(v.Digest, ":")
		digest = algo + ":" + hex[:min(12, len(hex))]
	}
	uuid := "no uuid"
	if v.ImageUUID != "" {
		uuid = "uuid " + v.ImageUUID[:min(8, len(v.ImageUUID))]
	}
	return fmt.Sprintf("%s [%s, %s]", name, uuid, digest)
}
