// Package engine orchestrates the provisioner's steps: it resolves the disks a spec
// names, plans the layout, applies it, deploys the images and installs the bootloader,
// and classifies every failure for the exit code, keeping the command line thin.
package engine

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/provisioner/provisioner/internal/disk"
	"github.com/provisioner/provisioner/partition"
	"github.com/provisioner/provisioner/schema"
)

// ErrUsage is matched by errors in how the provisioner was invoked (as opposed to a bad
// spec or a missing device).
var ErrUsage = errors.New("usage")

// ErrEnvironment is matched by errors about the machine: a device or image file that
// is missing or unreadable.
var ErrEnvironment = errors.New("environment")

// classified tags an error with a sentinel for errors.Is without adding the sentinel's
// text to the message.
type classified struct {
	class error
	err   error
}

func (c *classified) Error() string   { return c.err.Error() }
func (c *classified) Unwrap() []error { return []error{c.err, c.class} }

// Usagef returns an error matched by ErrUsage.
func Usagef(format string, args ...any) error {
	return &classified{ErrUsage, fmt.Errorf(format, args...)}
}

// Environmentf returns an error matched by ErrEnvironment.
func Environmentf(format string, args ...any) error {
	return &classified{ErrEnvironment, fmt.Errorf(format, args...)}
}

// Target maps a disk of the spec (by its id value, e.g. "vda") to what stands for it:
// a block device or disk-image file (Path), or a simulated disk (SizeBytes, SectorSize).
type Target struct {
	Name       string
	Path       string
	SizeBytes  uint64
	SectorSize uint64
}

// ParseTarget parses NAME=SIZE[:SECTOR] ("vda=20GiB", "vda=2TB:4096") or NAME=PATH
// ("vda=/dev/sdb", "vda=disk.img"). A value that parses as an absolute size is a
// simulated disk; anything else is a path.
func ParseTarget(arg string) (Target, error) {
	name, val, ok := strings.Cut(arg, "=")
	if !ok || name == "" || val == "" {
		return Target{}, Usagef("--device %q: want NAME=SIZE[:SECTOR] or NAME=PATH", arg)
	}
	t := Target{Name: name}
	sizePart, lssPart, hasLSS := strings.Cut(val, ":")
	if q, err := schema.ParseSize(sizePart, false); err == nil {
		if q.Kind != schema.Absolute || q.Bytes == 0 {
			return Target{}, Usagef("--device %q: a simulated disk needs an absolute size such as 20GiB", arg)
		}
		t.SizeBytes, t.SectorSize = q.Bytes, 512
		if hasLSS {
			n, err := strconv.ParseUint(lssPart, 10, 64)
			if err != nil || (n != 512 && n != 4096) {
				return Target{}, Usagef("--device %q: sector size %q must be 512 or 4096", arg, lssPart)
			}
			t.SectorSize = n
		}
		return t, nil
	}
	t.Path = val
	return t, nil
}

// PlanSpec resolves the targets (probing paths, read-only) and plans the layout. Every
// target must name a disk of the spec; disks without a target are planned from the
// spec's own "size".
func PlanSpec(ctx context.Context, spec *schema.Spec, targets []Target, seed string) (*partition.Layout, error) {
	if err := checkTargets(spec, targets, nil, false); err != nil {
		return nil, err
	}
	disks := map[string]partition.Disk{}
	for _, t := range targets {
		d := partition.Disk{SizeBytes: t.SizeBytes, SectorSize: t.SectorSize}
		if t.Path != "" {
			g, err := disk.Probe(ctx, t.Path)
			if err != nil {
				return nil, &classified{ErrEnvironment, fmt.Errorf("--device %s=%s: %w", t.Name, t.Path, err)}
			}
			d = partition.Disk{Path: t.Path, SizeBytes: g.SizeBytes, SectorSize: g.SectorSize}
		}
		disks[t.Name] = d
	}
	return partition.Plan(spec, disks, seed)
}

// checkTargets checks the --device and --size arguments against the spec as a whole,
// before any device is looked at: a usage error must not first probe the disks the
// user did not mean. Each --device names a disk of the spec, once; each --size a disk
// of the spec. needPath refuses a simulated disk (a size) where a disk is written.
func checkTargets(spec *schema.Spec, targets []Target, sizes map[string]uint64, needPath bool) error {
	known := map[string]bool{}
	var names []string
	for i := range spec.Partitions {
		if st := &spec.Partitions[i]; st.Type == schema.KindDisk {
			known[st.DiskID.Value] = true
			names = append(names, st.DiskID.Value)
		}
	}
	sort.Strings(names)
	unknown := func(flag, name string) error {
		return Usagef("%s %s: the spec has no disk with id %q (its disks: %s)", flag, name, name, strings.Join(names, ", "))
	}
	given := map[string]bool{}
	for _, t := range targets {
		switch {
		case !known[t.Name]:
			return unknown("--device", t.Name)
		case given[t.Name]:
			return Usagef("--device %s is given twice", t.Name)
		case needPath && t.Path == "":
			return Usagef("--device %s: partition needs a device or an image file, not a size", t.Name)
		}
		given[t.Name] = true
	}
	sized := make([]string, 0, len(sizes))
	for name := range sizes {
		sized = append(sized, name)
	}
	sort.Strings(sized)
	for _, name := range sized {
		if !known[name] {
			return unknown("--size", name)
		}
	}
	return nil
}
