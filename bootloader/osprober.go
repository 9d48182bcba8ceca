package bootloader

import (
	"context"
	"errors"
	"fmt"
	"path"
	"path/filepath"
	"slices"
	"strings"

	"github.com/provisioner/provisioner/internal/run"
)

// ConfinedProberArg is the first argument that makes the provisioner binary act as the
// confined prober child.
const ConfinedProberArg = "__os-prober-confined"

// OSProber finds kernels with os-prober and linux-boot-prober, confined to given volumes.
//
// os-prober looks at every partition of the machine (/sys/block/*/*[0-9]) and every LVM
// volume, mounting each through grub-mount: run as it is, it would read other
// processes' disks and loop devices, and it spends seconds on every partition it mounts.
// Probe therefore runs it in a child process with a mount namespace of its own, in which
// /sys/block lists only the partitions that may hold an OS root (see ConfinedProberMain).
type OSProber struct {
	Run run.Runner
	// Self is the argv prefix that re-executes this program, e.g. {"/proc/self/exe"} —
	// Probe appends ConfinedProberArg and the volumes.
	Self []string
}

// ProberVolumes are the block devices os-prober is shown: only what can hold an OS root.
// The multiboot partition, the EFI system partition, BIOS boot, swap, shared data and
// utility-image volumes never hold one, and each partition os-prober looks at costs a
// mount through FUSE (seconds under emulation), so they stay hidden.
type ProberVolumes struct {
	// Roots are the root volumes of the images with target "/" (partitions, LVM
	// volumes, md arrays): os-prober probes these and nothing else.
	Roots []string
	// Boot are those images' separate /boot volumes. linux-boot-prober finds one through
	// the root's fstab and blkid, so they are visible to blkid, but os-prober does not
	// probe them: a /boot volume alone holds no OS it reports.
	Boot []string
}

// bootArgPrefix marks a /boot volume among the child's arguments; the others are roots.
const bootArgPrefix = "boot="

// args are v as the child's arguments: the roots, then each /boot volume as boot=DEV.
func (v ProberVolumes) args() []string {
	out := slices.Clone(v.Roots)
	for _, b := range v.Boot {
		out = append(out, bootArgPrefix+b)
	}
	return out
}

// parseProberArgs reads the child's arguments back (ProberVolumes.args).
func parseProberArgs(args []string) ProberVolumes {
	var v ProberVolumes
	for _, a := range args {
		if b, ok := strings.CutPrefix(a, bootArgPrefix); ok {
			v.Boot = append(v.Boot, b)
		} else {
			v.Roots = append(v.Roots, a)
		}
	}
	return v
}

// OSProberAvailable reports whether os-prober and linux-boot-prober are installed.
func OSProberAvailable() bool {
	for _, p := range []string{"os-prober", "linux-boot-prober"} {
		if _, err := run.LookPath(p); err != nil {
			return false
		}
	}
	return true
}

// Probe returns the kernel found on each of v's roots (e.g. "/dev/loop3p2"), keyed by
// the canonical device path of the root (filepath.EvalSymlinks applied, so
// "/dev/mapper/vg-root" and "/dev/os/root" both become "/dev/dm-3"). A root on which
// linux-boot-prober found no kernel, or failed, has no entry: the caller decides whether
// to fall back (ProbeRoot). Kernel paths are as seen from the root's filesystem tree,
// also when /boot is a separate volume (given in v.Boot), and the newest kernel is
// chosen as ProbeRoot chooses it.
//
// ctx bounds the whole run, which takes seconds per root (os-prober mounts each one
// through FUSE). When it expires the child is killed; programs os-prober had started may
// then outlive it for a while, confined to its namespace, until they finish on their own.
func (p OSProber) Probe(ctx context.Context, v ProberVolumes) (map[string]Kernel, error) {
	if p.Run == nil || len(p.Self) == 0 {
		return nil, errors.New("os-prober: OSProber needs a Runner and the argv that re-executes this program")
	}
	if len(v.Roots) == 0 {
		return map[string]Kernel{}, nil
	}
	for _, d := range slices.Concat(v.Roots, v.Boot) {
		// The child takes its arguments as device paths; a relative one would depend on
		// its working directory and one starting with "-" looks like a flag in logs.
		if !filepath.IsAbs(d) {
			return nil, fmt.Errorf("os-prober: volume %q is not an absolute device path", d)
		}
	}
	where := strings.Join(v.Roots, " ")
	argv := slices.Concat(p.Self, []string{ConfinedProberArg}, v.args())
	res, err := p.Run.Run(ctx, run.Cmd{Argv: argv, MountNamespace: true})
	if err != nil {
		return nil, fmt.Errorf("os-prober on %s: %w", where, err)
	}
	rep, err := decodeReport(res.Stdout)
	if err != nil {
		return nil, fmt.Errorf("os-prober on %s: %w", where, err)
	}
	kernels := map[string]Kernel{}
	for _, root := range rep.Roots {
		k, ok := pickKernel(root.Entries)
		if !ok {
			continue
		}
		k.OSName = cleanName(root.Name)
		if k.OSName == "" {
			k.OSName = "Linux"
		}
		dev, err := filepath.EvalSymlinks(root.Partition)
		if err != nil {
			return nil, fmt.Errorf("os-prober on %s: root %s: %w", where, root.Partition, err)
		}
		if _, dup := kernels[dev]; !dup { // os-prober lists a device once; keep the first if not
			kernels[dev] = k
		}
	}
	return kernels, nil
}

// pickKernel chooses among one root's entries as ProbeRoot chooses among files: the
// newest version (`sort -V`) of the vmlinuz-/vmlinux- kernels that are not *.old, *.bak
// or rescue, those only when there is nothing else, and kernels with other names (a
// plain /vmlinuz) last; the full path breaks ties. Its initrd is the one ProbeRoot would
// pick among those reported for that kernel, else the first reported.
func pickKernel(entries []bootEntry) (Kernel, bool) {
	rank := func(base string) int {
		switch {
		case !strings.HasPrefix(base, "vmlinuz-") && !strings.HasPrefix(base, "vmlinux-"):
			return 2
		case strings.HasSuffix(base, ".old") || strings.HasSuffix(base, ".bak") || strings.Contains(base, "rescue"):
			return 1
		}
		return 0
	}
	version := func(base string) string {
		if rank(base) < 2 {
			return base[len("vmlinuz-"):]
		}
		return base
	}
	best := -1
	for i, e := range entries {
		if best < 0 {
			best = i
			continue
		}
		b, c := path.Base(entries[best].Kernel), path.Base(e.Kernel)
		if rc, rb := rank(c), rank(b); rc != rb {
			if rc < rb {
				best = i
			}
			continue
		}
		if v := verCmp(version(c), version(b)); v != 0 {
			if v > 0 {
				best = i
			}
			continue
		}
		if e.Kernel > entries[best].Kernel {
			best = i
		}
	}
	if best < 0 {
		return Kernel{}, false
	}
	kpath := entries[best].Kernel
	base := path.Base(kpath)
	k := Kernel{Path: kpath, Version: version(base)}
	var initrds []string
	for _, e := range entries {
		if e.Kernel == kpath && e.Initrd != "" && !slices.Contains(initrds, e.Initrd) {
			initrds = append(initrds, e.Initrd)
		}
	}
	dir := path.Dir(kpath)
	for _, n := range []string{"initrd.img-" + k.Version, "initramfs-" + k.Version + ".img", "initrd-" + k.Version + ".img", "initrd-" + k.Version} {
		if slices.Contains(initrds, path.Join(dir, n)) {
			k.Initrd = path.Join(dir, n)
			break
		}
	}
	if k.Initrd == "" && len(initrds) > 0 {
		k.Initrd = initrds[0]
	}
	return k, true
}
