package bootloader

import (
	"context"
	"fmt"
	"maps"
	"os"
	"path"
	"path/filepath"
	"slices"

	"github.com/provisioner/provisioner/internal/confine"
	"github.com/provisioner/provisioner/internal/disk"
	"github.com/provisioner/provisioner/internal/run"
)

// grubModules are embedded into the EFI image: enough to find the grub directory on
// a GPT partition holding ext2/3/4 or xfs, also on LVM or md (a single-image deploy keeps
// grub in the image's /boot, which may live there). Everything else is loaded from the
// grub directory at boot.
var grubModules = []string{"part_gpt", "part_msdos", "ext2", "xfs", "lvm", "mdraid1x", "search", "search_fs_uuid", "normal", "configfile", "linux", "echo", "test", "serial", "terminal", "loadenv"}

// biosCoreModules are embedded into the BIOS core image: only what finds grub's
// directory (the disk driver, partition tables, filesystems, LVM, md and the search by
// filesystem UUID), as grub-install embeds; grub then loads normal and every other module
// from that directory. The core image is LZMA-compressed and carries Reed-Solomon codes,
// both computed in proportion to its size: with grubModules it was 161 KB and took
// 13 s to build and write under QEMU's emulation, against 40 KB for this set.
var biosCoreModules = []string{"biosdisk", "part_gpt", "part_msdos", "ext2", "xfs", "lvm", "mdraid1x", "search_fs_uuid"}

// efiExtraModules are needed in the EFI image only.
var efiExtraModules = []string{"fat", "efi_gop", "all_video"}

// Installer installs grub from the provisioner's own environment: it never runs a
// program from a deployed image.
type Installer struct {
	Run run.Runner
	// GrubLib is where grub's platform files live ("" is /usr/lib/grub).
	GrubLib string
}

func (in Installer) grubLib() string {
	if in.GrubLib == "" {
		return "/usr/lib/grub"
	}
	return in.GrubLib
}

// Location says where grub's directory and the boot files live.
type Location struct {
	// Dir is where the filesystem holding them is seen now: the mounted multiboot
	// filesystem, or a single image's /boot. boot-info.json and history.jsonl go here.
	Dir string
	// GrubDir is grub's directory relative to Dir: "boot/grub" on the multiboot partition,
	// "grub" in an image's /boot.
	GrubDir string
	// Prefix is grub's directory as grub sees it on its filesystem: "/boot/grub" on the
	// multiboot partition or an image root, "/grub" on a separate /boot volume.
	Prefix string
	// FSUUID is that filesystem's UUID, which the EFI image searches for.
	FSUUID string
}

// Multiboot is the Location on a multiboot filesystem mounted at dir.
func Multiboot(dir, fsUUID string) Location {
	return Location{Dir: dir, GrubDir: DefaultGrubDir, Prefix: "/" + DefaultGrubDir, FSUUID: fsUUID}
}

// GrubPath is the host path of grub's directory.
func (l Location) GrubPath() string { return filepath.Join(l.Dir, l.GrubDir) }

// biosSetup is grub's program that writes boot.img into a disk's MBR and embeds core.img
// in its BIOS boot partition (grub-install runs the same code); Debian installs it with
// the i386-pc platform files.
const biosSetup = "grub-bios-setup"

// BIOSMkimageArgv builds the i386-pc core image with the early config, which finds
// grub's directory by filesystem UUID as the EFI image does, so one core image serves
// every disk. It is built from the platform files the modules are copied from.
func (in Installer) BIOSMkimageArgv(out, earlyCfg, prefix string) []string {
	return slices.Concat(in.mkimage("i386-pc", out, earlyCfg, prefix), biosCoreModules)
}

// mkimage is the start of a grub-mkimage call for platform.
func (in Installer) mkimage(platform, out, earlyCfg, prefix string) []string {
	return []string{"grub-mkimage", "-d", filepath.Join(in.grubLib(), platform), "-O", platform, "-o", out, "-c", earlyCfg, "-p", prefix}
}

// BIOSSetupArgv writes the boot code from dir (boot.img and core.img) onto disk.
func (in Installer) BIOSSetupArgv(dir, disk string) []string {
	return []string{filepath.Join(in.grubLib(), "i386-pc", biosSetup), "--directory=" + dir, disk}
}

// InstallBIOS installs grub onto every disk, so that whichever disk the firmware picks
// boots the same menu. It does what grub-install does for i386-pc, in the EFI install's
// way: grub-mkimage builds one core image in tmpDir, the platform files, boot.img and the
// core image are copied into grub's directory once, confined to it and flushed by one
// sync of the filesystem (grub-install flushes each of its three hundred files as it
// copies them: most of a deploy's bootloader phase under emulation), and
// grub-bios-setup writes boot.img and the core image from there onto each disk.
func (in Installer) InstallBIOS(ctx context.Context, loc Location, disks []string, tmpDir string) error {
	if loc.FSUUID == "" || loc.Prefix == "" {
		return fmt.Errorf("installing grub (BIOS): no filesystem uuid or prefix for grub's directory")
	}
	from := filepath.Join(in.grubLib(), "i386-pc")
	early := []byte(EarlyConfig(loc))
	cfg, core := filepath.Join(tmpDir, "load.cfg"), filepath.Join(tmpDir, "core.img")
	if err := os.WriteFile(cfg, early, 0o644); err != nil {
		return fmt.Errorf("installing grub (BIOS): %w", err)
	}
	if _, err := in.Run.Run(ctx, run.Cmd{Argv: in.BIOSMkimageArgv(core, cfg, loc.Prefix)}); err != nil {
		return fmt.Errorf("installing grub (BIOS): building the core image: %w", err)
	}
	extra := map[string][]byte{"load.cfg": early}
	for name, src := range map[string]string{"core.img": core, "boot.img": filepath.Join(from, "boot.img")} {
		b, err := os.ReadFile(src)
		if err != nil {
			return fmt.Errorf("installing grub (BIOS): %w", err)
		}
		extra[name] = b
	}
	rel := path.Join(loc.GrubDir, "i386-pc")
	if err := copyModules(from, loc.Dir, rel, extra); err != nil {
		return fmt.Errorf("installing grub (BIOS): %w", err)
	}
	// grub-bios-setup reads the files back through the block device.
	if err := disk.SyncFS(loc.Dir); err != nil {
		return fmt.Errorf("installing grub (BIOS): %w", err)
	}
	for _, d := range disks {
		if _, err := in.Run.Run(ctx, run.Cmd{Argv: in.BIOSSetupArgv(filepath.Join(loc.Dir, rel), d)}); err != nil {
			return fmt.Errorf("installing grub (BIOS) on %s: %w", d, err)
		}
	}
	return nil
}

// EarlyConfig is embedded in BOOTX64.EFI and in the BIOS core image: it finds grub's
// directory by the filesystem UUID of the partition holding it, so the ESP needs nothing
// but the image, and one core image boots from whichever disk the firmware picks.
func EarlyConfig(loc Location) string {
	return fmt.Sprintf("search.fs_uuid %s root\nset prefix=($root)%s\n", loc.FSUUID, loc.Prefix)
}

// MkimageArgv builds BOOTX64.EFI with the early config.
func (in Installer) MkimageArgv(out, earlyCfg, prefix string) []string {
	return slices.Concat(in.mkimage("x86_64-efi", out, earlyCfg, prefix), grubModules, efiExtraModules)
}

// InstallEFI puts grub for x86_64-efi at the removable path EFI/BOOT/BOOTX64.EFI of the
// ESP without mounting it (the build hosts' kernels have no vfat; in the ramdisk this
// also keeps one code path): grub-mkimage builds the image, mtools copies it in. The
// modules go to grub's directory under x86_64-efi, next to grub.cfg, as grub-install would.
func (in Installer) InstallEFI(ctx context.Context, loc Location, espDev, tmpDir string) error {
	if loc.FSUUID == "" || loc.Prefix == "" {
		return fmt.Errorf("installing grub (UEFI): no filesystem uuid or prefix for grub's directory")
	}
	if err := copyModules(filepath.Join(in.grubLib(), "x86_64-efi"), loc.Dir, path.Join(loc.GrubDir, "x86_64-efi"), nil); err != nil {
		return err
	}
	early := filepath.Join(tmpDir, "early.cfg")
	if err := os.WriteFile(early, []byte(EarlyConfig(loc)), 0o644); err != nil {
		return fmt.Errorf("writing the EFI early config: %w", err)
	}
	if err := disk.SyncFS(loc.Dir); err != nil {
		return fmt.Errorf("installing grub (UEFI): %w", err)
	}
	img := filepath.Join(tmpDir, "BOOTX64.EFI")
	if _, err := in.Run.Run(ctx, run.Cmd{Argv: in.MkimageArgv(img, early, loc.Prefix)}); err != nil {
		return fmt.Errorf("building the EFI image: %w", err)
	}
	env := []string{"MTOOLS_SKIP_CHECK=1"}
	for _, argv := range [][]string{
		{"mmd", "-D", "s", "-i", espDev, "::/EFI", "::/EFI/BOOT"},
		{"mcopy", "-o", "-i", espDev, img, "::/EFI/BOOT/BOOTX64.EFI"},
	} {
		if _, err := in.Run.Run(ctx, run.Cmd{Argv: argv, Env: env}); err != nil {
			return fmt.Errorf("filling the EFI system partition %s: %w", espDev, err)
		}
	}
	return nil
}

// copyModules copies grub's platform files (*.mod, *.lst) into the directory rel under
// top, and writes there the extra files (name to content), confined to top: on a
// single-image deploy that is the image's /boot, and a symlink or device node the image
// left there is refused rather than written through. Nothing is flushed file by file:
// the caller syncs the filesystem once.
func copyModules(from, top, rel string, extra map[string][]byte) error {
	mods, err := filepath.Glob(filepath.Join(from, "*.mod"))
	if err != nil || len(mods) == 0 {
		return fmt.Errorf("no grub modules in %s (install grub-pc-bin or grub-efi-amd64-bin)", from)
	}
	lsts, _ := filepath.Glob(filepath.Join(from, "*.lst"))
	d, err := confine.Open(top)
	if err != nil {
		return fmt.Errorf("copying grub modules: %w", err)
	}
	defer d.Close()
	if err := d.MkdirAll(rel, 0o755); err != nil {
		return fmt.Errorf("copying grub modules: %w", err)
	}
	for _, src := range append(mods, lsts...) {
		b, err := os.ReadFile(src)
		if err != nil {
			return fmt.Errorf("copying grub modules: %w", err)
		}
		if err := d.WriteFile(path.Join(rel, filepath.Base(src)), b, 0o644); err != nil {
			return fmt.Errorf("copying grub modules: %w", err)
		}
	}
	for _, name := range slices.Sorted(maps.Keys(extra)) {
		if err := d.WriteFile(path.Join(rel, name), extra[name], 0o644); err != nil {
			return fmt.Errorf("writing grub's %s: %w", name, err)
		}
	}
	return nil
}
