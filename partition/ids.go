package partition

import (
	"fmt"
	"path"
	"strings"
	"unicode/utf8"

	"github.com/google/uuid"
	"github.com/provisioner/provisioner/schema"
)

// planNamespace scopes the name-based UUIDs the planner derives from a seed, so they
// cannot collide with version-5 UUIDs other software derives from the same strings.
var planNamespace = uuid.MustParse("6f0c4b8e-6a55-4a4e-9b4e-2f1d7c3a9e10")

// ids derives every GUID and UUID of a plan from the seed and a stable key (the JSON
// pointer of the volume, or the role of an implicit partition), so one seed always
// gives the same plan, and two machines deployed with different seeds never share one.
type ids struct{ seed string }

func (g ids) uuid(key string) string {
	return uuid.NewSHA1(planNamespace, []byte(g.seed+"\x00"+key)).String()
}

// guid is a GPT GUID, upper case as sgdisk and fdisk print them.
func (g ids) guid(key string) string { return strings.ToUpper(g.uuid(key)) }

// fsUUID is a filesystem UUID in the form its mkfs takes: FAT has only a 32-bit volume
// serial, written "ABCD-1234" as blkid shows it.
func (g ids) fsUUID(key, fsType string) string {
	u := uuid.NewSHA1(planNamespace, []byte(g.seed+"\x00"+key))
	if fsType == "vfat" {
		return fmt.Sprintf("%02X%02X-%02X%02X", u[0], u[1], u[2], u[3])
	}
	return u.String()
}

// defaultLabel names a filesystem nobody named: the image for a root, the last path
// element for other mounts, "swap" for swap. Labels are for people reading blkid; fstab
// and grub use UUIDs, so duplicates across images are harmless.
func defaultLabel(v *schema.Volume) string {
	var l string
	switch {
	case v.IsSwap():
		l = "swap"
	case v.Mount == "/":
		if len(v.Bound) > 0 {
			l = v.Bound[0]
		} else {
			l = "root"
		}
	case v.Mount != "":
		l = path.Base(v.Mount)
	default:
		return ""
	}
	for max := schema.LabelMax(v.FileSystem); len(l) > max; {
		// Cut whole characters: a label is text, not bytes.
		_, size := utf8.DecodeLastRuneInString(l)
		l = l[:len(l)-size]
	}
	if v.FileSystem == "vfat" {
		l = strings.ToUpper(l)
	}
	return l
}

// volumeName is a readable GPT partition name: what the volume is for, prefixed with
// its image when several OSes share the disk ("centos-root", "ubuntu-var").
func volumeName(v *schema.Volume, rootImages int) string {
	var what string
	switch {
	case v.IsSwap():
		what = "swap"
	case v.Mount == "/":
		what = "root"
	case v.Mount != "":
		what = strings.ReplaceAll(strings.Trim(v.Mount, "/"), "/", "-")
	case v.FileSystem != "":
		what = "data"
	default:
		what = "reserved"
	}
	if rootImages >= 2 && len(v.Bound) == 1 && !v.IsSwap() {
		return v.Bound[0] + "-" + what
	}
	return what
}
