package partition

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/provisioner/provisioner/internal/disk"
	"github.com/provisioner/provisioner/internal/run"
)

// verification carries what the verify policy's steps read from the disks to the steps
// that use it: the partition tables, for showing the kernel the partitions and for the
// adoption; the kept filesystems' identities, for the adoption.
type verification struct {
	l      *Layout
	devs   Devices
	tables map[string]*ExistingTable
	kept   map[*Filesystem]FSInfo
}

// verifyActions builds the verify policy's steps, in the order they run. First the
// comparison, which only reads: each disk's table, then the logical volumes. Then the
// bring-up of what the disks hold (the partitions where their tables have them, the md
// arrays, the volume groups), the probe of every kept filesystem, and the adoption of
// what was found into the plan. Only then the writes: the filesystems without
// keep_data are re-created. On the first difference the run fails and nothing has been
// written.
func verifyActions(l *Layout, devs Devices) []Action {
	v := &verification{l: l, devs: devs, tables: map[string]*ExistingTable{}, kept: map[*Filesystem]FSInfo{}}
	var out []Action
	for _, d := range l.Disks {
		out = append(out, v.compareTable(d))
	}
	if len(l.VGs) > 0 {
		out = append(out, v.compareLVs())
	}
	for _, d := range l.Disks {
		out = append(out, v.showPartitions(d))
	}
	for _, r := range l.RAIDs {
		out = append(out, assembleAction(r, devs))
	}
	for _, vg := range l.VGs {
		out = append(out, activateAction(vg))
	}
	for _, t := range FilesystemDevices(l, devs) {
		if t.FS.KeepData {
			out = append(out, v.probe(t))
		}
	}
	out = append(out, v.adopt())
	for i := range out {
		out[i].check = true
	}
	return append(out, remakeActions(l, devs)...)
}

// mismatch names the policy in a difference between the disks and the plan.
func (v *verification) mismatch(err error) error {
	return fmt.Errorf("partitions_policy %q: %w", v.l.Policy, err)
}

// compareTable reads d's partition table and compares it with the plan.
func (v *verification) compareTable(d *DiskLayout) Action {
	dev := v.devs[d.ID.Value]
	return Action{Desc: fmt.Sprintf("read the partition table of %s and compare it with disk %s of the plan (±1 MiB)", dev, d.ID), do: func(ctx context.Context, env Env) error {
		t, err := ReadTable(ctx, dev, d.SectorSize)
		if errors.Is(err, ErrNoGPT) {
			return fmt.Errorf("partitions_policy %q: disk %s (%s): %w", v.l.Policy, d.ID, dev, err)
		}
		if err != nil {
			return fmt.Errorf("reading the partition table of %s: %w", dev, err)
		}
		if err := CompareTable(d, t); err != nil {
			return v.mismatch(err)
		}
		v.tables[d.ID.Value] = t
		return nil
	}}
}

// compareLVs lists the logical volumes and compares them with the plan.
func (v *verification) compareLVs() Action {
	return Action{Desc: "list the logical volumes and compare them with the plan (±1 MiB)", Argv: lvsArgv, result: func(res run.Result, err error) error {
		if err != nil {
			return fmt.Errorf("listing logical volumes: %w", err)
		}
		lvs, err := parseLVs(res.Stdout)
		if err != nil {
			return err
		}
		if err := CompareLVs(v.l, lvs); err != nil {
			return v.mismatch(err)
		}
		return nil
	}}
}

// showPartitions makes the kernel see d's partitions where its table has them, which
// may differ from the plan by up to 1 MiB.
func (v *verification) showPartitions(d *DiskLayout) Action {
	dev := v.devs[d.ID.Value]
	return Action{Desc: fmt.Sprintf("make the kernel see the %d partitions of %s where its table has them", len(d.Partitions), dev), do: func(ctx context.Context, env Env) error {
		t := v.tables[d.ID.Value]
		if t == nil {
			return fmt.Errorf("disk %s: the partition table of %s was not read", d.ID, dev)
		}
		parts := make([]disk.Part, len(t.Partitions))
		for i, p := range t.Partitions {
			parts[i] = disk.Part{Number: p.Number, Start: p.Start * d.SectorSize, Size: (p.End - p.Start + 1) * d.SectorSize}
		}
		return env.Sys.Reread(ctx, dev, parts)
	}}
}

// assembleAction starts an existing md array from its members.
func assembleAction(r *RAID, devs Devices) Action {
	argv := []string{"mdadm", "--assemble", "--run", r.Device()}
	for _, m := range r.Members {
		argv = append(argv, partNode(devs, m))
	}
	return Action{Desc: "assemble raid1 " + r.Device(), Argv: argv, result: func(_ run.Result, err error) error {
		if err != nil && !mdRunning(r.Device()) {
			return fmt.Errorf("assembling %s: %w", r.Device(), err)
		}
		return nil
	}}
}

// mdRunning reports whether the md array node dev exists and is a block device: mdadm
// refuses to assemble an array that is already running, as on a deployed node whose other
// images use it, and such an array needs no assembly.
func mdRunning(dev string) bool {
	fi, err := os.Stat(dev)
	return err == nil && fi.Mode()&os.ModeDevice != 0
}

// activateAction makes an existing volume group's logical volumes appear.
func activateAction(vg *VG) Action {
	return Action{Desc: "activate volume group " + vg.Name, Argv: []string{"lvm", "vgchange", "-ay", vg.Name}, result: func(_ run.Result, err error) error {
		if err != nil {
			return fmt.Errorf("activating volume group %s: %w", vg.Name, err)
		}
		return nil
	}}
}

// probe asks blkid what the device of a kept filesystem holds.
func (v *verification) probe(t FSDevice) Action {
	return Action{Desc: "probe the kept filesystem on " + t.Dev, Argv: blkidArgv(t.Dev), result: func(res run.Result, err error) error {
		info, err := blkidResult(t.Dev, res, err)
		if err != nil {
			return err
		}
		v.kept[t.FS] = info
		return nil
	}}
}

// adopt makes the plan describe what the disks keep (Layout.Adopt), from the tables and
// probes read before.
func (v *verification) adopt() Action {
	return Action{Desc: "adopt the GUIDs of the partition tables and the UUIDs and labels of the kept filesystems into the plan (the images' fstabs follow)", do: func(context.Context, Env) error {
		if err := v.l.Adopt(v.tables, v.kept); err != nil {
			return v.mismatch(err)
		}
		return nil
	}}
}

// remakeActions re-creates every filesystem that is not kept; kept ones are left
// untouched.
func remakeActions(l *Layout, devs Devices) []Action {
	var out []Action
	for _, t := range FilesystemDevices(l, devs) {
		if !t.FS.KeepData {
			out = append(out, mkfsAction(t.FS, t.Dev))
		}
	}
	return out
}
