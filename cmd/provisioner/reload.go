package main

import (
	"fmt"
	"strings"

	"github.com/provisioner/provisioner/bootloader"
	"github.com/provisioner/provisioner/internal/bootflow"
	"github.com/provisioner/provisioner/internal/engine"
	"github.com/provisioner/provisioner/schema"
	"github.com/spf13/cobra"
)

func newReloadCmd(s *streams) *cobra.Command {
	var flags bootDirFlags
	var o engine.ReloadOptions
	var via viaFlags
	var live bool
	var lo engine.LiveOptions
	var fl fleetlockFlags
	cmd := &cobra.Command{
		Use:     "reload IMAGE --url URL [--checksum C] [--format F] [--image-uuid U] [--image-name N] [--tries N | --no-trial] [--reboot] [--via-ramdisk [--ramdisk-url U] [--kexec | --reboot] | --live [--dry-run] [--include-var PATH]...] [--fleetlock-url U] [--group G] [--id I] [--lock-timeout D] [--device PATH | --boot-dir DIR]",
		Short:   "Reload one deployed image in place from a new image, and boot it on trial",
		Long:    reloadHelp + "\n" + bootDirHelp,
		Example: reloadExamples,
		Args:    exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if flags.lockWait < 0 {
				return engine.Usagef("--lock-wait %v: want a duration of 0 or more", flags.lockWait)
			}
			o.Image = args[0]
			o.BootDir = engine.BootDirOptions{Dir: flags.dir, Device: flags.device, Env: engine.HostEnv(nil), LockWait: flags.lockWait}
			o.Boot.Self = []string{"/proc/self/exe"}
			o.ImageRun = imageRunOn(s.err)
			if via.viaRamdisk && live {
				return engine.Usagef("reload: --via-ramdisk and --live exclude each other")
			}
			if live && via.reboot {
				return engine.Usagef("reload --live: --reboot goes with a reload that is not live (a live reload needs no reboot)")
			}
			sl, err := reloadSlot(cmd, s, &fl, via)
			if err != nil {
				return err
			}
			if via.viaRamdisk {
				return reloadViaRamdisk(cmd, s, o, via, sl)
			}
			if via.set(cmd) {
				return engine.Usagef("--ramdisk-url, --ramdisk-checksum, --kexec, --callback, --token, --node and --agent go with --via-ramdisk")
			}
			if live {
				if flags.device != "" {
					return engine.Usagef("reload --live: --device is offline; --live reloads the root the node runs from")
				}
				res, err := engine.ReloadLive(cmd.Context(), o, lo)
				if res != nil {
					printLive(s, res)
				}
				return err
			}
			if lo.DryRun || len(lo.IncludeVar) > 0 {
				return engine.Usagef("reload: --dry-run and --include-var go with --live")
			}
			res, err := engine.Reload(cmd.Context(), o)
			if err != nil {
				return err
			}
			printReload(s, res)
			if !via.reboot {
				return nil
			}
			return sl.reboot(cmd.Context(), s, false, "the reload is written and boots at the next boot")
		},
	}
	cmd.Flags().StringVar(&o.URL, "url", "", "the new image: http(s)://, file:// or a path, as an image's url in a spec")
	cmd.Flags().StringVar(&o.Checksum, "checksum", "", "sha256:<hex>, sha512:<hex>, md5:<hex>, or the URL of a checksum file (as in a spec)")
	cmd.Flags().StringVar(&o.Format, "format", "", "the format the image must have (tar, tar.gz, tar.xz, tar.zst, tar.bz2, raw, ...); detected from the data when empty")
	cmd.Flags().StringVar(&o.ImageUUID, "image-uuid", "", "the new image's image_uuid for boot-info.json")
	cmd.Flags().StringVar(&o.ImageName, "image-name", "", "the new image's image_name for boot-info.json (default: keep the recorded one)")
	cmd.Flags().IntVar(&o.Tries, "tries", 0, fmt.Sprintf("boot the image on trial this many times before grub rolls back (default %d)", engine.DefaultTries))
	cmd.Flags().BoolVar(&o.NoTrial, "no-trial", false, "make the image the default at once, without a trial")
	cmd.Flags().StringVar(&o.Prober, "prober", "", "kernel discovery: auto, os-prober or builtin (default: the one the deploy used)")
	via.bind(cmd)
	fl.bind(cmd)
	cmd.Flags().BoolVar(&live, "live", false, "reload the root the node runs from without a reboot (the new image must have the running kernel)")
	cmd.Flags().BoolVar(&lo.DryRun, "dry-run", false, "with --live: stage the image and list what would be added, replaced, removed, kept and merged; change nothing")
	cmd.Flags().StringArrayVar(&lo.IncludeVar, "include-var", nil, "with --live: also sync this path under /var (repeatable); the rest of /var is never touched")
	flags.bind(cmd)
	return cmd
}

// reloadSlot checks reload's FleetLock flags and, for a reload that reboots, resolves
// its reboot slot before anything is written.
func reloadSlot(cmd *cobra.Command, s *streams, fl *fleetlockFlags, via viaFlags) (slot, error) {
	if !via.reboot && !via.kexec {
		if fl.changed(cmd) {
			return slot{}, engine.Usagef("reload: the FleetLock flags go with --reboot or --kexec")
		}
		return slot{}, nil
	}
	return prepareSlot(cmd, s, fl)
}

// printReload says what a reload did and what boots next.
func printReload(s *streams, res *engine.ReloadResult) {
	e := res.Element
	fmt.Fprintf(s.out, "reloaded %d (%s): %s -> %s\n", e.GrubID, e.OSID, describeVersion(res.From), describeVersion(res.To))
	if res.MovedDefault != nil && res.Tries > 0 {
		fmt.Fprintf(s.out, "it boots next on trial (%d tries); %d (%s) stays the default until `provisioner confirm` runs in %s, and boots again by itself if the trial fails\n",
			res.Tries, res.MovedDefault.GrubID, res.MovedDefault.OSID, e.OSID)
	} else if res.Tries > 0 {
		fmt.Fprintf(s.out, "it boots next on trial (%d tries); the default stays until `provisioner confirm` runs in %s, and boots again by itself if the trial fails\n", res.Tries, e.OSID)
	} else {
		fmt.Fprintf(s.out, "it is the default now\n")
	}
}

// viaFlags are reload's flags of a reload through the deploy ramdisk.
type viaFlags struct {
	viaRamdisk, kexec, reboot bool
	v                         engine.ViaRamdiskOptions
}

func (f *viaFlags) bind(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.BoolVar(&f.viaRamdisk, "via-ramdisk", false, "reload through the deploy ramdisk kept on the node, at the next boot: the way to reload the root the node runs from")
	fl.StringVar(&f.v.RamdiskURL, "ramdisk-url", "", "with --via-ramdisk: fetch the ramdisk first from this directory URL (vmlinuz and initramfs.cpio.zst, as make ramdisk builds them)")
	fl.StringVar(&f.v.RamdiskChecksum, "ramdisk-checksum", "", "with --ramdisk-url: the URL of a checksum file listing vmlinuz and initramfs.cpio.zst")
	fl.BoolVar(&f.kexec, "kexec", false, "with --via-ramdisk: load the ramdisk with kexec instead of booting it through the firmware and grub (reboots at once)")
	fl.BoolVar(&f.reboot, "reboot", false, "reboot once the reload is written or staged, after taking a FleetLock reboot slot when a server is configured (default: tell the operator to)")
	fl.StringVar(&f.v.Report.Callback, "callback", "", "with --via-ramdisk: the URL the ramdisk POSTs its events to, as a deploy's provisioner.callback")
	fl.StringVar(&f.v.Report.Token, "token", "", "with --via-ramdisk: the callback's bearer token")
	fl.StringVar(&f.v.Report.Node, "node", "", "with --via-ramdisk: the node name the events carry (default: the ramdisk's hostname)")
	fl.StringVar(&f.v.Report.Agent, "agent", "", "with --via-ramdisk: the address the ramdisk serves its agent API on (\":9999\"; the API takes --token), to follow the reload and diagnose a failure")
}

// set reports whether any of the flags only --via-ramdisk takes was given.
func (f *viaFlags) set(cmd *cobra.Command) bool {
	for _, n := range []string{"ramdisk-url", "ramdisk-checksum", "kexec", "callback", "token", "node", "agent"} {
		if cmd.Flags().Changed(n) {
			return true
		}
	}
	return false
}

// reloadViaRamdisk stages the reload for the deploy ramdisk and reboots into it (with
// --reboot or --kexec, after taking the reboot slot sl holds a client for), or says how.
func reloadViaRamdisk(cmd *cobra.Command, s *streams, o engine.ReloadOptions, via viaFlags, sl slot) error {
	if via.kexec {
		via.v.Kexec = bootflow.LoadKexec
	}
	res, err := engine.StageReloadViaRamdisk(cmd.Context(), o, via.v)
	if err != nil {
		return err
	}
	e := res.Element
	if res.Fetched {
		fmt.Fprintf(s.out, "fetched the deploy ramdisk (%s kernel, %s initramfs) onto the multiboot partition\n", schema.HumanBytes(uint64(res.Ramdisk.KernelBytes)), schema.HumanBytes(uint64(res.Ramdisk.InitrdBytes)))
	}
	switch {
	case via.kexec:
		fmt.Fprintf(s.out, "the deploy ramdisk is loaded for kexec and reloads %d (%s) from %s\n", e.GrubID, e.OSID, o.URL)
	case via.reboot:
		fmt.Fprintf(s.out, "the deploy ramdisk boots once, at the next boot, and reloads %d (%s) from %s\n", e.GrubID, e.OSID, o.URL)
	default:
		fmt.Fprintf(s.out, "the deploy ramdisk boots once, at the next boot, and reloads %d (%s) from %s: reboot to start it\n", e.GrubID, e.OSID, o.URL)
		return nil
	}
	return sl.reboot(cmd.Context(), s, via.kexec, "the reload through the deploy ramdisk stays staged for the next boot")
}

// printLive shows a live reload's outcome: the counts and bytes of each class, the paths
// of each class for a dry run, the merged files and the services restarted.
func printLive(s *streams, res *engine.LiveReloadResult) {
	e, p := res.Element, res.Plan
	verb := "reloaded live"
	if res.DryRun {
		verb = "dry run of a live reload of"
	}
	fmt.Fprintf(s.out, "%s %d (%s): %s -> %s, kernel %s kept\n", verb, e.GrubID, e.OSID, describeVersion(res.From), describeVersion(res.To), res.Kernel)
	if p == nil {
		return
	}
	for _, c := range engine.SyncClasses {
		t := p.Totals[c]
		fmt.Fprintf(s.out, "  %-8s %6d  %s\n", c, t.Count, humanBytes(t.Bytes))
	}
	if p.NoManifest {
		fmt.Fprintf(s.out, "no manifest of /etc as deployed (%s): every /etc file that differs from the image counts as changed on the node\n", engine.EtcManifestPath)
	}
	for _, en := range p.Entries {
		switch {
		case en.Class == engine.SyncMerged:
			fmt.Fprintf(s.out, "merged %s: the node's version kept, the image's written to %s (%s)\n", en.Path, en.NewPath, en.Reason)
		case res.DryRun:
			fmt.Fprintf(s.out, "%-8s %s %s%s\n", en.Class, en.Kind, en.Path, reasonSuffix(en.Reason))
		}
	}
	for _, r := range res.Restarts {
		if r.Err != nil {
			fmt.Fprintf(s.out, "restart of %s FAILED (%s): %v\n", r.Unit, r.Reason, r.Err)
		} else {
			fmt.Fprintf(s.out, "restarted %s: %s\n", r.Unit, r.Reason)
		}
	}
	for _, r := range res.Skipped {
		fmt.Fprintf(s.out, "not restarted %s: %s\n", r.Unit, r.Reason)
	}
	if res.NoSystemd != "" && !res.DryRun {
		fmt.Fprintln(s.out, res.NoSystemd)
	}
}

// reasonSuffix is " (why)", or "" without a reason.
func reasonSuffix(why string) string {
	if why == "" {
		return ""
	}
	return " (" + why + ")"
}

// humanBytes shows a byte count in the unit that keeps it short.
func humanBytes(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

// describeVersion shows an image version for people: its name, uuid and digest, as known.
func describeVersion(v bootloader.ImageVersion) string {
	var parts []string
	for _, p := range []string{v.ImageName, v.ImageUUID, v.Digest} {
		if p != "" {
			parts = append(parts, p)
		}
	}
	if len(parts) == 0 {
		return "(unnamed image)"
	}
	return strings.Join(parts, " ")
}

const reloadHelp = `reload replaces one deployed image by a new one, in place, on the node or offline on a
disk or disk-image file (--device): IMAGE is a grub_id, a name or an image_name, as for
switch-default. The other images stay untouched.

Before anything is written it reads the deploy's record of its plan (beside
boot-info.json), finds the image's volumes, refuses (exit 3) when one it would re-create is
mounted (the root the node runs from, for one), and opens the new image: a 404, a format
it cannot read or a checksum file without the image's line fail here (exit 4).

Then it re-creates only the image's own filesystems with their recorded UUIDs and labels
(volumes with keep_data and volumes shared with other images are kept and mounted as in a
deploy), streams, verifies and extracts the image with the deploy's code, writes its fstab,
finds its kernel and commits the menu, boot-info.json, the plan record and the history.

Crash safety: when the image is the default (or would boot next), the default first moves
to another image (the booted one on a node), so that at no moment does grub boot a root
being rewritten. A reload that fails or is cut leaves the other images booting as before,
and its image marked as failed in list.

Trial: the image then boots next on trial, --tries times at most (default 3), counted by
grub itself in grubenv; run provisioner confirm inside it to make it the default. When it
does not confirm (it did not boot, or did not come up healthy), grub boots the previous
default again by itself after the last try, and list and history report the failed trial.
When grub cannot load its kernel at all, the same boot falls back to the previous default.
--no-trial makes the image the default at once.

--reboot reboots the node once the reload is written (with --via-ramdisk: staged; with
--kexec: staged and loaded), after taking a FleetLock reboot slot when a server is
configured (--fleetlock-url, or the node's configuration file: see provisioner reboot).
Without a slot within --lock-timeout it exits 3 without rebooting; the reload stays
written or staged and happens, or boots, at the next boot. provisioner confirm releases
the slot once the node runs healthy.

The root the node runs from (reload refuses it: its filesystem is mounted) is reloaded
with --via-ramdisk, by the deploy ramdisk kept on the multiboot partition (a spec with
"ramdisk" keeps it at deploy; --ramdisk-url fetches it now). reload checks the image and
the record here, writes the ramdisk's boot entry with the reload on its kernel command
line (with --callback and --token, where it reports), and makes grub boot it once; then
reboot, or give --reboot, or --kexec to load the ramdisk with kexec and skip the firmware.
The ramdisk reloads the image with the code above and the same crash-safe order, arms
its trial and reboots. On a single-image node the ramdisk is the default while the root
is rewritten (a power cut boots it again, and it reloads again), and the trial falls back
to it: after the last failed try grub boots the ramdisk, which reports the failed trial
to the callback and waits.

--live reloads the root the node runs from, without a reboot, when the new image has
the running kernel (the same release and the same bytes of /boot/vmlinuz-RELEASE); IMAGE
must be the booted one. It stages the new image in /.provisioner-stage on the root's own
filesystem (refusing with numbers when there is no room; a staging directory a cut run
left is removed first), refuses when the kernel differs (reload through the deploy
ramdisk then), and makes the root match the image by rename, never writing a file in
place: a running program keeps its old inode. Other mounted filesystems, /proc, /sys,
/dev, /run, /tmp, the node's identity (/etc/fstab, /etc/hostname, /etc/machine-id, SSH
host keys, network configuration) and /var (except --include-var paths) are never
touched. /etc is merged: a file the node changed since the last deploy or reload keeps
the node's version, and the image's is written beside it as NAME.provisioner-new. Then,
where systemd runs, systemctl daemon-reexec, and a restart of each running service whose
program, libraries or unit files changed; a failed restart fails the command (exit 3)
after the boot files are committed. --dry-run stages, lists every path with its class
and the counts and bytes, and removes the staged tree: it changes nothing else.
A live reload is not atomic across files: see the README for what a cut leaves.
`

const reloadExamples = `  provisioner reload tiny-b --url http://images.example/b-2.tar.zst --checksum http://images.example/SHA256SUMS
  provisioner reload 1 --url /srv/images/b.tar.gz --checksum sha256:9f86d0... --tries 2
  provisioner reload ubuntu --url file:///srv/u24.tar.xz --no-trial --device disk.img
  provisioner reload tiny-a --url http://images.example/a-2.tar.zst --via-ramdisk --callback http://conductor/events --token s3cret --reboot
  provisioner reload ubuntu --url http://images.example/u24.2.tar.zst --checksum sha256:4e1f... --live --dry-run
  provisioner reload ubuntu --url http://images.example/u24.2.tar.zst --checksum sha256:4e1f... --live --include-var /var/lib/app`
