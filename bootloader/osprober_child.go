package bootloader

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"

	"github.com/provisioner/provisioner/internal/disk"
	"github.com/provisioner/provisioner/internal/run"
)

// ConfinedProberMain is the child's body: called by cmd/provisioner (and test binaries'
// TestMain) when os.Args[1] == ConfinedProberArg, with args = os.Args[2:] (the roots,
// then each /boot volume as boot=DEV: ProberVolumes).
// It must run in a mount namespace of its own (OSProber.Probe starts it so) and refuses
// to run in its parent's: it mounts over /sys/block, which in the machine's namespace
// would hide every disk from everyone. It makes / recursively private so that nothing it
// mounts propagates out, and mounts a tmpfs over /sys/block that lists, of the machine's
// devices, only the given roots (os-prober's candidates) and what an LVM volume or md
// array among them is assembled from (/sys/block/X/slaves), each disk as a directory
// holding only those of its partitions; a tmpfs over /var/lib/os-prober (os-prober's
// state and FUSE mount point stay private, and parallel runs do not share them); and a
// /proc/partitions listing only those devices and the /boot volumes (for blkid, through
// which linux-boot-prober finds a separate /boot). Then it runs os-prober and, for each
// Linux root among the given ones, linux-boot-prober through r, and writes one JSON
// document to stdout. A failing linux-boot-prober is recorded for its partition; the
// others are still probed.
//
// It has no time limit of its own: ctx, and the parent's ctx that kills this process,
// bound it.
func ConfinedProberMain(ctx context.Context, r run.Runner, args []string, stdout io.Writer) error {
	v := parseProberArgs(args)
	if len(v.Roots) == 0 {
		return errors.New("confined os-prober: no root volume given")
	}
	if err := checkOwnMountNamespace(); err != nil {
		return err
	}
	c, env, err := confineToVolumes(v)
	if err != nil {
		return fmt.Errorf("confined os-prober: %w", err)
	}
	// The namespace goes with us, but a grub-mount daemon left by a killed os-prober
	// would keep it alive: detaching its mount point lets it exit.
	defer disk.DetachMount(proberState)
	if mountForProbers(ctx, v, os.Stderr) {
		skipProberInit(os.Stderr)
	}
	if !c.showsDeviceMapper() {
		hideLVS(os.Stderr)
	}

	rep, err := probeConfined(ctx, r, env, c.allows)
	if err != nil {
		return fmt.Errorf("confined os-prober: %w", err)
	}
	if err := json.NewEncoder(stdout).Encode(rep); err != nil {
		return fmt.Errorf("confined os-prober: writing the report: %w", err)
	}
	return nil
}

// mountForProbers mounts every volume of v read-only (disk.MountForReading) in a
// directory of the child's private state, so that os-prober and linux-boot-prober find
// them mounted. Both probe a mounted partition where it is and mount an unmounted one
// themselves through grub-mount, grub's filesystem code run as a FUSE daemon, together
// with grub-probe and the udevadm queries they make: a few hundred milliseconds on real
// hardware, seconds per volume under emulation, and twice per root (os-prober, then
// linux-boot-prober). A separate /boot mounted here is bind-mounted by linux-boot-prober
// onto its root's /boot, as it does for any mounted /boot it finds through the root's
// fstab. A volume that cannot be mounted so (another filesystem, a journal to replay)
// is left to the probers' own mount, and why is written to w. It reports whether every
// volume is mounted.
func mountForProbers(ctx context.Context, v ProberVolumes, w io.Writer) bool {
	all := true
	for i, dev := range slices.Concat(v.Roots, v.Boot) {
		dir := filepath.Join(proberMounts, strconv.Itoa(i))
		err := os.MkdirAll(dir, 0o700)
		if err == nil {
			err = disk.MountForReading(ctx, dev, dir, disk.SniffFS(dev))
		}
		if err != nil {
			fmt.Fprintf(w, "confined os-prober: %s is left to os-prober's own mount: %v\n", dev, err)
			all = false
		}
	}
	return all
}

// skipProberInit hides os-prober's start-up scripts behind an empty directory when it
// mounts nothing itself: their only work is loading, with modprobe piped into logger,
// the modules of fourteen filesystems and FUSE for grub-mount, thirty programs per run.
func skipProberInit(w io.Writer) {
	if fi, err := os.Stat(proberInit); err != nil || !fi.IsDir() {
		return
	}
	if err := disk.MountTmpfs("provisioner-os-prober-init", proberInit, "mode=0755,size=16k", true); err != nil {
		fmt.Fprintf(w, "confined os-prober: %s still runs: %v\n", proberInit, err)
	}
}

// hideLVS makes lvs invisible to os-prober when no shown volume is a logical volume:
// os-prober lists logical volumes with lvs whenever it is installed, and lvs, which
// reads its configuration and scans the devices, is the slowest program of a run that
// has none to find (about a fifth of it on real hardware). /dev/null bind-mounted over
// the program is not a regular file, so the shell's lookup (`type lvs`) fails and
// os-prober skips LVM. Only this namespace, where nothing else runs, is affected.
func hideLVS(w io.Writer) {
	p, err := run.LookPath("lvs")
	if err != nil {
		return
	}
	if p, err = filepath.EvalSymlinks(p); err == nil {
		err = disk.BindMount(os.DevNull, p)
	}
	if err != nil {
		fmt.Fprintf(w, "confined os-prober: lvs still runs: %v\n", err)
	}
}

// checkOwnMountNamespace fails unless this process's mount namespace differs from its
// parent's. Making / private succeeds in any namespace, so it proves nothing, and PID 1
// is not a reference either (a container's PID 1 may sit in another namespace than the
// container's processes). The parent is: Probe starts us in a new namespace, and a
// person starting us by hand from a shell shares the shell's.
func checkOwnMountNamespace() error {
	own, err := os.Readlink("/proc/self/ns/mnt")
	if err != nil {
		return fmt.Errorf("confined os-prober: reading its mount namespace: %w", err)
	}
	parentLink := fmt.Sprintf("/proc/%d/ns/mnt", os.Getppid())
	parent, err := os.Readlink(parentLink)
	if err != nil {
		return fmt.Errorf("confined os-prober: reading its parent's mount namespace: %w", err)
	}
	if own == parent {
		return fmt.Errorf("confined os-prober: refusing to run in its parent's mount namespace (%s): it would hide the machine's disks; it is started by OSProber.Probe", own)
	}
	return nil
}

// probeConfined runs os-prober, then linux-boot-prober on each Linux partition that
// allowed accepts. allowed is the last line of defence should os-prober list a device
// that is not a given root (it asks lvs for LVM volumes, and lvs lists every volume of
// a root's volume group).
func probeConfined(ctx context.Context, r run.Runner, env []string, allowed func(partition string) bool) (proberReport, error) {
	rep := proberReport{Format: proberFormat, Roots: []proberRoot{}}
	res, err := r.Run(ctx, run.Cmd{Argv: []string{"os-prober"}, Env: env})
	if err != nil {
		return rep, err
	}
	for _, found := range parseOSProber(res.Stdout) {
		if found.Type != "linux" || !allowed(found.Partition) {
			continue
		}
		root := proberRoot{Partition: found.Partition, Name: found.Long}
		res, err := r.Run(ctx, run.Cmd{Argv: []string{"linux-boot-prober", found.Partition}, Env: env})
		switch {
		case err != nil && ctx.Err() != nil:
			// Out of time: the remaining partitions would fail the same way.
			return rep, fmt.Errorf("linux-boot-prober %s: %w", found.Partition, err)
		case err != nil:
			root.Error = err.Error()
		default:
			root.Entries = parseBootProber(res.Stdout)
			if len(root.Entries) == 0 {
				root.Error = "linux-boot-prober found no kernel"
			}
		}
		rep.Roots = append(rep.Roots, root)
	}
	return rep, nil
}
