package main

import (
	"fmt"
	"log/slog"
	"os"

	"github.com/provisioner/provisioner/internal/engine"
	"github.com/provisioner/provisioner/partition"
	"github.com/spf13/cobra"
)

func newDeployCmd(s *streams) *cobra.Command {
	var flags diskFlags
	var boot engine.BootOptions
	var preserve bool
	var perDisk int
	cmd := &cobra.Command{
		Use:   "deploy SPEC [--device NAME=PATH ...] [--size NAME=SIZE ...] [--seed S] [--dry-run]",
		Short: "Partition the spec's disks and deploy every image into its root",
		Long:  deployHelp,
		Example: `  provisioner deploy examples/multiboot-two-images.json --device vda=disk.img --size vda=16GiB
  provisioner deploy provision.json --dry-run`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if perDisk < 1 {
				return engine.Usagef("--images-per-disk %d: want 1 or more", perDisk)
			}
			spec, popts, err := flags.load(s, args[0])
			if err != nil {
				return err
			}
			tty := false
			if f, ok := s.err.(*os.File); ok {
				tty = isTerminal(f)
			}
			opts := engine.DeployOptions{
				PartitionOptions: popts,
				TTY:              tty,
				Log:              slog.New(slog.NewTextHandler(s.err, nil)),
				Boot:             boot,
				PreserveOnError:  preserve,
				ImagesPerDisk:    perDisk,
			}
			opts.Boot.Self = []string{"/proc/self/exe"}
			// Progress goes to standard error; the result table to standard output.
			opts.Out = s.err
			if opts.Events != nil {
				opts.Events = engine.TextEvents(s.err)
			}
			res, err := engine.Deploy(cmd.Context(), spec, opts)
			var layout *partition.Layout
			if res != nil {
				layout = res.Layout
			}
			if err := flags.finish(s, layout, err); err != nil {
				return err
			}
			if res != nil && res.BootInfo != nil {
				fmt.Fprintln(s.out)
				engine.Summary(s.out, res.BootInfo)
				if boot.BootInfoPath != "" {
					fmt.Fprintf(s.out, "boot-info.json written to %s\n", boot.BootInfoPath)
				}
			}
			if res != nil && res.Durations != nil {
				fmt.Fprintln(s.out)
				engine.PrintDurations(s.out, res.Durations)
			}
			return nil
		},
	}
	flags.bind(cmd)
	cmd.Flags().StringVar(&boot.BootInfoPath, "boot-info", engine.DefaultBootInfoPath, "also write boot-info.json here (\"\" for nowhere else)")
	cmd.Flags().StringVar(&boot.Prober, "prober", engine.ProberAuto, "kernel discovery: auto (os-prober when installed), os-prober, builtin")
	cmd.Flags().IntVar(&perDisk, "images-per-disk", engine.DefaultImagesPerDisk, "how many images deploy at once onto one disk (images sharing a filesystem always take turns)")
	cmd.Flags().BoolVar(&preserve, "preserve-on-error", false, "keep what a failed clean deploy wrote (default: erase its partition tables)")
	return cmd
}

const deployHelp = `deploy does everything partition does, then deploys each image: it mounts the volumes
bound to the image into a private temporary root (shallowest first), streams the image
(http, https, file:// or a path; retried, resumed with HTTP Range after a dropped
connection, its length checked against Content-Length), verifies its checksum while
streaming, and extracts it into the image's target (tar, tar.gz, tar.xz, tar.zst,
tar.bz2, detected from the data) or writes it block-wise (raw ext2/3/4 or xfs images, then
given the planned UUID and grown to the partition). It writes the image's /etc/fstab from
the plan and unmounts everything, also when something failed. Images on different disks
deploy side by side, up to --images-per-disk at once onto one disk; images sharing a
filesystem take turns.

Extraction is confined to the image root: an entry with "..", a link leading out, or a
hard link to a file outside aborts the image, naming the entry. Owners, modes, setuid
bits, hard links, device nodes, FIFOs and xattrs (file capabilities, SELinux labels) are
kept.

Progress (bytes, rate, ETA) is a redrawn line on a terminal and a log line every few
seconds otherwise. Exit code 4 means an image could not be fetched, verified or
extracted (truncated, corrupt, or holding an entry the target tree cannot take); 5 that
a target filesystem filled up or failed while an image was written.

Once every image is deployed and verified, grub is installed once, from this
environment (never by running a program from an image): for BIOS onto every disk
(boot code in the MBR, core image in each BIOS boot partition), for UEFI at the
removable path EFI/BOOT/BOOTX64.EFI of the EFI system partition (and an NVRAM entry when
this machine has EFI variables and the disk is not an image file). Its directory is on
the multiboot partition, or, with a single OS image, in that image's /boot. Each root's
kernel, initrd and OS name are found with os-prober and linux-boot-prober, shown only the
roots (and their /boot volumes), when installed, else by reading /boot and
/etc/os-release (--prober); this runs alongside grub's installs, and the BIOS and UEFI
installs alongside each other.
The menu (grub.cfg, one entry per OS image in spec order, the boot image the default),
boot-info.json (also written to --boot-info) and a history line follow; grubenv's
saved_entry is written last. The boot menu is printed at the end, then how long each
phase took (plan, partition, images and each image, bootloader with kernel discovery,
grub install and commit).

If a clean deploy fails after it began writing, the partition tables it wrote are
erased, so the machine cannot boot a half-written OS and falls back to network boot;
--preserve-on-error keeps them for inspection. SIGTERM, SIGINT or SIGHUP make it fail
where it stands, with the same cleanup (programs it runs are killed and waited for,
everything is unmounted and detached, the tables erased): exit 1 before the first
write, 5 after; a second signal exits at once.`
