package partition

import (
	"context"
	"fmt"
	"strings"

	"github.com/provisioner/provisioner/internal/disk"
	"github.com/provisioner/provisioner/internal/run"
)

// Env is what applying a layout needs from the machine. Tests give it a fake runner;
// --dry-run never calls it.
type Env struct {
	Run run.Runner
	Sys disk.Sys
}

// Devices maps each planned disk, by its spec id value ("vda"), to the block device the
// layout is written to (a real disk, or the loop device of a disk-image file).
type Devices map[string]string

// Action is one step of applying a layout: a program to run, or something the
// provisioner does itself (read or write a partition table, wipe, re-read partitions).
// Policies differ only in the list of actions they build (Policy.Actions); executing and
// printing a list is the same code for all of them, and --dry-run prints exactly what a
// real run executes.
type Action struct {
	// Desc says what the step does, for people.
	Desc string
	// Argv is the program to run; empty for in-process steps.
	Argv []string
	// do is an in-process step; nil for a program.
	do func(ctx context.Context, env Env) error
	// result, when set, takes the program's outcome (its output, or its failure) in place
	// of "a failure fails the step": a step that reads the disks hands what it found to
	// the steps after it this way.
	result func(res run.Result, err error) error
	// check marks a step that writes nothing of the layout: it reads the disks, compares
	// them with the plan, brings up what they hold or probes it. A failure there leaves
	// the disks as they were.
	check bool
}

// String renders the step as --dry-run and the progress log show it.
func (a Action) String() string {
	if len(a.Argv) > 0 {
		return "run: " + run.String(a.Argv)
	}
	return a.Desc
}

func (a Action) apply(ctx context.Context, env Env) error {
	if a.do != nil {
		return a.do(ctx, env)
	}
	res, err := env.Run.Run(ctx, run.Cmd{Argv: a.Argv})
	if a.result != nil {
		return a.result(res, err)
	}
	if err != nil {
		return fmt.Errorf("%s: %w", a.Desc, err)
	}
	return nil
}

// StepError is the failure of one step of an action list.
type StepError struct {
	// N is the step's number, from 1, of Of steps.
	N, Of int
	// Desc is the step's description.
	Desc string
	// Err is the step's own failure.
	Err error
}

// Error names the step and its failure: "step 4/9 (create volume group os): ...".
func (e *StepError) Error() string {
	return fmt.Sprintf("step %d/%d (%s): %v", e.N, e.Of, e.Desc, e.Err)
}

// Unwrap returns the step's own failure.
func (e *StepError) Unwrap() error { return e.Err }

// Hooks tell Execute's caller how a run goes; either may be nil.
type Hooks struct {
	// Step is called with each step, numbered from 1 of n, before it runs.
	Step func(n, of int, a Action)
	// BeforeWrite is called once, before the first step that may write: a caller learns
	// from it when the disks stop being as they were (the verify policy compares, brings
	// up and probes them first).
	BeforeWrite func()
}

// Execute runs the actions in order and stops at the first failure, a *StepError.
func Execute(ctx context.Context, env Env, actions []Action, h Hooks) error {
	for i, a := range actions {
		if !a.check && h.BeforeWrite != nil {
			h.BeforeWrite()
			h.BeforeWrite = nil
		}
		if h.Step != nil {
			h.Step(i+1, len(actions), a)
		}
		if err := a.apply(ctx, env); err != nil {
			return &StepError{N: i + 1, Of: len(actions), Desc: a.Desc, Err: err}
		}
	}
	return nil
}

// CleanActions builds the clean policy: wipe and re-create everything on the named disks.
// Per disk: wipe the old signatures at both ends, write the GPT, make the kernel see
// the partitions, wipe each new partition's ends; then the md arrays, LVM, and every
// filesystem with its planned UUID and label.
func CleanActions(l *Layout, devs Devices) ([]Action, error) {
	if err := checkDevices(l, devs); err != nil {
		return nil, err
	}
	var out []Action
	for _, d := range l.Disks {
		out = append(out, diskActions(d, devs[d.ID.Value])...)
	}
	out = append(out, raidActions(l, devs)...)
	out = append(out, lvmActions(l, devs)...)
	for _, t := range FilesystemDevices(l, devs) {
		out = append(out, mkfsAction(t.FS, t.Dev))
	}
	return out, nil
}

func checkDevices(l *Layout, devs Devices) error {
	for _, d := range l.Disks {
		if devs[d.ID.Value] == "" {
			return fmt.Errorf("no device for disk %s", d.ID)
		}
	}
	return nil
}

func diskActions(d *DiskLayout, dev string) []Action {
	size := d.Sectors * d.SectorSize
	out := []Action{
		{Desc: fmt.Sprintf("wipe the first and last MiB of %s (old tables and signatures)", dev), do: func(ctx context.Context, env Env) error {
			if err := zeroRange(dev, 0, min(Align, size)); err != nil {
				return err
			}
			return zeroRange(dev, size-min(Align, size), min(Align, size))
		}},
		{Desc: fmt.Sprintf("write GPT on %s: %d partitions, disk GUID %s", dev, len(d.Partitions), d.GUID), do: func(ctx context.Context, env Env) error {
			return writeGPT(ctx, dev, d)
		}},
	}
	parts := make([]disk.Part, len(d.Partitions))
	for i, p := range d.Partitions {
		parts[i] = disk.Part{Number: p.Number, Start: p.Start * d.SectorSize, Size: p.SizeBytes}
	}
	out = append(out, Action{Desc: fmt.Sprintf("make the kernel see the %d partitions of %s", len(parts), dev), do: func(ctx context.Context, env Env) error {
		return env.Sys.Reread(ctx, dev, parts)
	}})
	for _, p := range d.Partitions {
		out = append(out, wipeEndsAction(disk.PartitionPath(dev, p.Number), p.SizeBytes, ""))
	}
	return out
}

// wipeEndsAction zeroes the first and last MiB of a new partition node of size bytes, so
// that no signature of what the space held before shows through (what adds to the
// step's description).
func wipeEndsAction(node string, size uint64, what string) Action {
	n := min(Align, size)
	return Action{Desc: fmt.Sprintf("wipe the first and last MiB of %s%s", what, node), do: func(ctx context.Context, env Env) error {
		if err := zeroRange(node, 0, n); err != nil {
			return err
		}
		return zeroRange(node, size-n, n)
	}}
}

func partNode(devs Devices, ref PartRef) string {
	return disk.PartitionPath(devs[ref.Disk], ref.Partition)
}

// raidActions creates each md raid1 array with its planned UUID. A one-member raid1 (as
// Fuel wrote for /boot on single-disk nodes) needs --force.
func raidActions(l *Layout, devs Devices) []Action {
	var out []Action
	for _, r := range l.RAIDs {
		argv := []string{"mdadm", "--create", r.Device(), "--run", "--metadata=1.2", "--level=1",
			fmt.Sprintf("--raid-devices=%d", len(r.Members)), "--uuid=" + mdadmUUID(r.UUID), "--name=" + r.Name, "--homehost=any"}
		if len(r.Members) == 1 {
			argv = append(argv, "--force")
		}
		for _, m := range r.Members {
			argv = append(argv, partNode(devs, m))
		}
		out = append(out, Action{Desc: "create raid1 " + r.Device(), Argv: argv})
	}
	return out
}

// mdadmUUID writes a UUID the way mdadm takes it: four colon-separated 32-bit groups.
func mdadmUUID(u string) string {
	h := strings.ReplaceAll(u, "-", "")
	if len(h) != 32 {
		return u
	}
	return h[0:8] + ":" + h[8:16] + ":" + h[16:24] + ":" + h[24:32]
}

// lvmActions creates the pvs with the planned metadata, the vgs with 4 MiB extents and
// the lvs by extent count, so LVM allocates exactly what was planned.
func lvmActions(l *Layout, devs Devices) []Action {
	var out []Action
	for _, vg := range l.VGs {
		var pvs []string
		for _, pv := range vg.PVs {
			node := partNode(devs, pv.PartRef)
			pvs = append(pvs, node)
			argv := []string{"lvm", "pvcreate", "-ff", "-y", "--zero", "y", "--dataalignment", "1m"}
			if pv.MetadataBytes != defaultMDA {
				// One copy, lvm2's default, named so an lvm.conf asking for two cannot
				// move the data start the plan computed.
				argv = append(argv, "--metadatasize", fmt.Sprintf("%db", pv.MetadataBytes), "--metadatacopies", "1")
			}
			out = append(out, Action{Desc: "create LVM physical volume " + node, Argv: append(argv, node)})
		}
		out = append(out, Action{Desc: "create volume group " + vg.Name,
			Argv: append([]string{"lvm", "vgcreate", "-y", "--physicalextentsize", fmt.Sprintf("%db", vg.ExtentSize), vg.Name}, pvs...)})
		for _, lv := range vg.LVs {
			out = append(out, Action{Desc: "create logical volume " + vg.Name + "/" + lv.Name,
				Argv: []string{"lvm", "lvcreate", "-y", "--wipesignatures", "y", "--zero", "y", "-n", lv.Name, "-l", fmt.Sprint(lv.Extents), vg.Name}})
		}
	}
	return out
}

// mkfsAction makes fs on dev with its planned UUID and label, mkfs_options last so they
// can refine (never silently drop) what the plan asks.
func mkfsAction(fs *Filesystem, dev string) Action {
	var argv []string
	switch fs.Type {
	case "ext2", "ext3", "ext4":
		argv = []string{"mke2fs", "-F", "-q", "-t", fs.Type, "-U", fs.UUID}
		if fs.Label != "" {
			argv = append(argv, "-L", fs.Label)
		}
	case "xfs":
		argv = []string{"mkfs.xfs", "-f", "-q", "-m", "uuid=" + fs.UUID}
		if fs.Label != "" {
			argv = append(argv, "-L", fs.Label)
		}
	case "vfat":
		argv = []string{"mkfs.vfat", "-i", strings.ReplaceAll(fs.UUID, "-", "")}
		if fs.Label != "" {
			argv = append(argv, "-n", fs.Label)
		}
	case "swap":
		argv = []string{"mkswap", "-f", "-U", fs.UUID}
		if fs.Label != "" {
			argv = append(argv, "-L", fs.Label)
		}
	}
	argv = append(append(argv, fs.MkfsOptions...), dev)
	what := fs.Mount
	if what == "" {
		what = "unmounted"
	}
	return Action{Desc: fmt.Sprintf("make %s on %s (%s, UUID %s)", fs.Type, dev, what, fs.UUID), Argv: argv}
}
