package partition

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sort"

	"github.com/provisioner/provisioner/internal/disk"
	"github.com/provisioner/provisioner/internal/run"
)

// ErrNotInPlace is matched by the error of UpdateLayout and UpdateActions for a change an
// update does not make in place (a volume destroyed or re-created, an md array grown):
// such a spec is applied by a redeploy.
var ErrNotInPlace = errors.New("not an in-place change")

// UpdateLayout returns the layout an update leaves on the disks: next (the changed spec's
// plan), with every volume the break-down keeps or grows carrying the identities it has
// on the disks now (disk GUIDs, partition GUIDs, filesystem UUIDs and labels, md array
// UUIDs) from old, the deploy's layout as applied. fstabs, grub.cfg and boot-info.json name
// filesystems by UUID, so a kept volume must keep its UUID whatever seed and JSON pointer
// the new plan gave it; created volumes keep next's fresh identities. A changed label of a
// kept filesystem is not applied: the filesystem keeps the label it has.
//
// A break-down that re-creates a volume, or destroys one other than a volume the spec
// dropped with removeData, is refused with ErrNotInPlace: an update adds and grows
// volumes, leaves those of removed images alone, and with removeData removes them.
func UpdateLayout(old, next *Layout, b *Breakdown, removeData bool) (*Layout, error) {
	if err := inPlace(b, removeData); err != nil {
		return nil, err
	}
	m, err := cloneLayout(next)
	if err != nil {
		return nil, err
	}
	for _, d := range m.Disks {
		od := layoutDisk(old, d.ID.Value)
		if od == nil {
			continue
		}
		d.GUID = od.GUID
		for _, p := range d.Partitions {
			if op := oldPartition(od, p.Number, b); op != nil {
				p.GUID = op.GUID
				keepIdentity(p.FS, op.FS)
			}
		}
		if err := keepLeftAlone(d, od, b); err != nil {
			return nil, err
		}
	}
	keepLeftAloneLVs(m, old, b)
	for _, r := range m.RAIDs {
		if or := findRAID(old, r.Name); or != nil && kept(b, "md/"+r.Name) {
			r.UUID = or.UUID
			keepIdentity(r.FS, or.FS)
		}
	}
	for _, vg := range m.VGs {
		for _, lv := range vg.LVs {
			if olv := findLV(old, vg.Name, lv.Name); olv != nil && kept(b, vg.Name+"/"+lv.Name) {
				keepIdentity(lv.FS, olv.FS)
			}
		}
	}
	m.Seed = old.Seed
	m.renderImages()
	return m, nil
}

// inPlace refuses a break-down with a volume an update cannot change in place: a volume
// re-created, or destroyed (one the spec dropped is destroyed with removeData).
func inPlace(b *Breakdown, removeData bool) error {
	for _, v := range b.Volumes {
		switch {
		case v.Action == ActionDestroyed && removeData && v.Reason == reasonNotInSpec:
		case v.Action == ActionDestroyed || v.Action == ActionRecreated:
			return fmt.Errorf("%s would be %s (%s): %w; an update adds and grows volumes, a redeploy re-creates them", v.Name, v.Action, v.Reason, ErrNotInPlace)
		case v.Action == ActionGrown && v.Kind == KindRAID:
			return fmt.Errorf("md array %s would grow: %w; grow it with mdadm --grow, or redeploy", v.Name, ErrNotInPlace)
		}
	}
	return nil
}

// keepLeftAlone puts into the merged disk d the partitions of the deployed disk od the
// break-down leaves alone (those of removed images), where they are, so that the
// rewritten GPT keeps them.
func keepLeftAlone(d, od *DiskLayout, b *Breakdown) error {
	planned := map[int]bool{}
	for _, p := range d.Partitions {
		planned[p.Number] = true
	}
	for _, op := range od.Partitions {
		v := volumeChange(b, fmt.Sprintf("%s#%d", od.ID.Value, op.Number))
		if planned[op.Number] || v == nil || v.Action != ActionKept {
			continue
		}
		c := *op
		d.Partitions = append(d.Partitions, &c)
	}
	sort.Slice(d.Partitions, func(i, j int) bool { return d.Partitions[i].Number < d.Partitions[j].Number })
	return d.Validate()
}

// keepLeftAloneLVs puts into the merged layout m the logical volumes of old the
// break-down leaves alone, in their groups.
func keepLeftAloneLVs(m, old *Layout, b *Breakdown) {
	for _, vg := range m.VGs {
		for _, olv := range vgLVs(old, vg.Name) {
			v := volumeChange(b, vg.Name+"/"+olv.Name)
			if findLV(m, vg.Name, olv.Name) == nil && v != nil && v.Action == ActionKept {
				c := *olv
				vg.LVs = append(vg.LVs, &c)
			}
		}
	}
}

// vgLVs returns the logical volumes of l's group named name.
func vgLVs(l *Layout, name string) []*LV {
	for _, g := range l.VGs {
		if g.Name == name {
			return g.LVs
		}
	}
	return nil
}

// volumeChange returns the break-down's change of the volume named name, nil when none.
func volumeChange(b *Breakdown, name string) *VolumeChange {
	for i := range b.Volumes {
		if b.Volumes[i].Name == name {
			return &b.Volumes[i]
		}
	}
	return nil
}

// kept reports whether the break-down keeps or grows the volume named name.
func kept(b *Breakdown, name string) bool {
	v := volumeChange(b, name)
	return v != nil && (v.Action == ActionKept || v.Action == ActionGrown)
}

// oldPartition returns old disk od's partition number n when the break-down keeps or
// grows it.
func oldPartition(od *DiskLayout, n int, b *Breakdown) *Partition {
	if !kept(b, fmt.Sprintf("%s#%d", od.ID.Value, n)) {
		return nil
	}
	for _, p := range od.Partitions {
		if p.Number == n {
			return p
		}
	}
	return nil
}

// keepIdentity gives fs the UUID and label of the filesystem of the same type it replaces.
func keepIdentity(fs, old *Filesystem) {
	if fs == nil || old == nil || fs.Type != old.Type {
		return
	}
	fs.UUID, fs.Label = old.UUID, old.Label
}

// findRAID returns l's md array named name, or nil.
func findRAID(l *Layout, name string) *RAID {
	for _, r := range l.RAIDs {
		if r.Name == name {
			return r
		}
	}
	return nil
}

// findLV returns l's logical volume vg/lv, or nil.
func findLV(l *Layout, vg, lv string) *LV {
	for _, g := range l.VGs {
		if g.Name != vg {
			continue
		}
		for _, v := range g.LVs {
			if v.Name == lv {
				return v
			}
		}
	}
	return nil
}

// UpdateActions builds the steps that change the disks from old to merged (UpdateLayout's
// result) as the break-down says, in the order they run: per disk with a created or grown
// partition, the GPT rewritten with every partition where it is (kept ones unmoved, with
// their GUIDs), the kernel told of the new sizes and partitions (a mounted partition is
// resized in place), the ends of each created partition wiped; then each grown physical
// volume resized, each logical volume created or extended; then the created filesystems
// made and the grown ones grown (see growFS). Kept volumes are not written. A break-down
// with nothing to change in the layout gives no step.
func UpdateActions(old, merged *Layout, b *Breakdown, devs Devices, removeData bool) ([]Action, error) {
	if err := inPlace(b, removeData); err != nil {
		return nil, err
	}
	if err := checkDevices(merged, devs); err != nil {
		return nil, err
	}
	var out []Action
	for _, v := range b.Volumes {
		// Before the partition under it leaves the table.
		if v.Kind == KindLV && v.Action == ActionDestroyed {
			out = append(out, Action{Desc: "remove logical volume " + v.Name + " (--remove-data)", Argv: []string{"lvm", "lvremove", "-y", v.Name}})
		}
	}
	for _, d := range merged.Disks {
		out = append(out, diskUpdateActions(d, devs[d.ID.Value], b)...)
	}
	out = append(out, lvUpdateActions(merged, devs, b)...)
	for _, t := range FilesystemDevices(merged, devs) {
		v := changeOfFS(merged, t.FS, b)
		switch {
		case v == nil:
		case v.Action == ActionCreated:
			out = append(out, mkfsAction(t.FS, t.Dev))
		case v.Action == ActionGrown && v.Role != RolePV:
			out = append(out, growFSAction(t.FS, t.Dev))
		}
	}
	return out, nil
}

// diskUpdateActions rewrites disk d's table when the break-down creates or grows one of
// its partitions.
func diskUpdateActions(d *DiskLayout, dev string, b *Breakdown) []Action {
	var created []*Partition
	changed := false
	for _, v := range b.Volumes {
		if v.Kind == KindPartition && v.Disk == d.ID.Value && v.Action == ActionDestroyed {
			changed = true // removed from the table with --remove-data
		}
	}
	for _, p := range d.Partitions {
		switch v := volumeChange(b, fmt.Sprintf("%s#%d", d.ID.Value, p.Number)); {
		case v == nil:
		case v.Action == ActionCreated:
			created = append(created, p)
			changed = true
		case v.Action == ActionGrown:
			changed = true
		}
	}
	if !changed {
		return nil
	}
	out := []Action{{Desc: fmt.Sprintf("rewrite the GPT of %s: %d partitions, the kept ones where they are", dev, len(d.Partitions)), do: func(ctx context.Context, env Env) error {
		return rewriteGPT(ctx, dev, d)
	}}}
	parts := make([]disk.Part, len(d.Partitions))
	for i, p := range d.Partitions {
		parts[i] = disk.Part{Number: p.Number, Start: p.Start * d.SectorSize, Size: p.SizeBytes}
	}
	out = append(out, Action{Desc: fmt.Sprintf("make the kernel see the new and grown partitions of %s", dev), do: func(ctx context.Context, env Env) error {
		return env.Sys.Reread(ctx, dev, parts)
	}})
	for _, p := range created {
		out = append(out, wipeEndsAction(disk.PartitionPath(dev, p.Number), p.SizeBytes, "the new partition "))
	}
	return out
}

// lvUpdateActions resizes the grown physical volumes, then creates and extends the
// logical volumes by extent count, as the deploy creates them.
func lvUpdateActions(l *Layout, devs Devices, b *Breakdown) []Action {
	var out []Action
	for _, vg := range l.VGs {
		for _, pv := range vg.PVs {
			if v := volumeChange(b, fmt.Sprintf("%s#%d", pv.Disk, pv.Partition)); v != nil && v.Action == ActionGrown {
				node := partNode(devs, pv.PartRef)
				out = append(out, Action{Desc: "resize LVM physical volume " + node, Argv: []string{"lvm", "pvresize", node}})
			}
		}
		for _, lv := range vg.LVs {
			v := volumeChange(b, vg.Name+"/"+lv.Name)
			switch {
			case v == nil:
			case v.Action == ActionCreated:
				out = append(out, Action{Desc: "create logical volume " + vg.Name + "/" + lv.Name,
					Argv: []string{"lvm", "lvcreate", "-y", "--wipesignatures", "y", "--zero", "y", "-n", lv.Name, "-l", fmt.Sprint(lv.Extents), vg.Name}})
			case v.Action == ActionGrown:
				out = append(out, Action{Desc: fmt.Sprintf("extend logical volume %s/%s to %d extents", vg.Name, lv.Name, lv.Extents),
					Argv: []string{"lvm", "lvextend", "-l", fmt.Sprint(lv.Extents), vg.Name + "/" + lv.Name}})
			}
		}
	}
	return out
}

// changeOfFS returns the break-down's change of the volume holding fs in l.
func changeOfFS(l *Layout, fs *Filesystem, b *Breakdown) *VolumeChange {
	for _, d := range l.Disks {
		for _, p := range d.Partitions {
			if p.FS == fs {
				return volumeChange(b, fmt.Sprintf("%s#%d", d.ID.Value, p.Number))
			}
		}
	}
	for _, r := range l.RAIDs {
		if r.FS == fs {
			return volumeChange(b, "md/"+r.Name)
		}
	}
	for _, vg := range l.VGs {
		for _, lv := range vg.LVs {
			if lv.FS == fs {
				return volumeChange(b, vg.Name+"/"+lv.Name)
			}
		}
	}
	return nil
}

// growFSAction grows the filesystem fs on dev to fill its grown volume, keeping its data:
// ext2/3/4 with resize2fs (online where mounted; offline after the forced e2fsck
// resize2fs requires), xfs with xfs_growfs on its mount point (mounted privately for the
// step when it is not), swap made again with its UUID and label (it holds no data; an
// active swap is refused). vfat is not grown: the refusal says so.
func growFSAction(fs *Filesystem, dev string) Action {
	return Action{Desc: fmt.Sprintf("grow the %s filesystem %s on %s to fill its volume", fs.Type, fs.UUID, dev), do: func(ctx context.Context, env Env) error {
		return growFS(ctx, env, fs, dev)
	}}
}

// growFS is growFSAction's step.
func growFS(ctx context.Context, env Env, fs *Filesystem, dev string) error {
	mnt, err := env.Sys.MountedAt(dev)
	if err != nil {
		return fmt.Errorf("growing %s: %w", dev, err)
	}
	switch fs.Type {
	case "ext2", "ext3", "ext4":
		if mnt == "" {
			// resize2fs grows an unmounted filesystem only after a forced check; exit
			// code 1 is e2fsck's "errors corrected".
			_, err := env.Run.Run(ctx, run.Cmd{Argv: []string{"e2fsck", "-f", "-p", dev}})
			if e := (*run.Error)(nil); err != nil && (!errors.As(err, &e) || e.ExitCode != 1) {
				return fmt.Errorf("checking %s before growing it: %w", dev, err)
			}
		}
		return runArgv(ctx, env, "resize2fs", dev)
	case "xfs":
		if mnt != "" {
			return runArgv(ctx, env, "xfs_growfs", mnt)
		}
		return withPrivateMount(ctx, env, dev, "xfs", func(dir string) error {
			return runArgv(ctx, env, "xfs_growfs", dir)
		})
	case "swap":
		if mnt != "" {
			return fmt.Errorf("%s is an active swap: swapoff it first", dev)
		}
		argv := []string{"mkswap", "-f", "-U", fs.UUID}
		if fs.Label != "" {
			argv = append(argv, "-L", fs.Label)
		}
		return runArgv(ctx, env, append(argv, dev)...)
	}
	return fmt.Errorf("%s: growing a %s filesystem is not supported", dev, fs.Type)
}

// runArgv runs a program of a step, its failure naming the program and what it printed.
func runArgv(ctx context.Context, env Env, argv ...string) error {
	return Action{Desc: run.String(argv), Argv: argv}.apply(ctx, env)
}

// withPrivateMount mounts dev (of fsType) on a temporary directory for fn, then unmounts
// it and removes the directory.
func withPrivateMount(ctx context.Context, env Env, dev, fsType string, fn func(dir string) error) (err error) {
	dir, err := os.MkdirTemp("", "provisioner-grow-")
	if err != nil {
		return fmt.Errorf("growing %s: %w", dev, err)
	}
	defer os.Remove(dir)
	if err := disk.Mount(ctx, dev, dir, fsType, ""); err != nil {
		return fmt.Errorf("growing %s: %w", dev, err)
	}
	defer func() {
		if uerr := disk.Unmount(ctx, dir); uerr != nil && err == nil {
			err = fmt.Errorf("growing %s: unmounting %s: %w", dev, dir, uerr)
		}
	}()
	return fn(dir)
}
