package bootloader

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"strings"

	"github.com/provisioner/provisioner/internal/confine"
)

// The deploy ramdisk kept on a node, so that it can boot again later (a reload of the
// running root, or a trial on a single-image node that has nothing else to fall back to).
// Its files live in RamdiskDir on the multiboot filesystem; its menu entry is a file of its
// own in grub's directory, which grub.cfg sources when it is there (Config.Ramdisk).
const (
	// RamdiskDir holds the kept ramdisk, relative to the boot directory's root.
	RamdiskDir = "ramdisk"
	// RamdiskKernel and RamdiskInitrd are the kept kernel and initramfs.
	RamdiskKernel = "ramdisk/vmlinuz"
	RamdiskInitrd = "ramdisk/initramfs.cpio.zst"
	// RamdiskCmdline holds the base kernel words (console settings and the like) that the
	// ramdisk entry boots with, one line.
	RamdiskCmdline = "ramdisk/cmdline"
	// RamdiskEntryID is the --id of the ramdisk's menu entry.
	RamdiskEntryID = "provisioner-ramdisk"
	// RamdiskCfgPath is the file holding the ramdisk's menu entry, relative to the boot
	// directory: grub.cfg sources it as $prefix/ramdisk.cfg.
	RamdiskCfgPath = "boot/grub/ramdisk.cfg"
)

// ramdiskCfgName is RamdiskCfgPath's name in grub's directory, as grub.cfg sources it.
const ramdiskCfgName = "ramdisk.cfg"

// ramdiskTitle is the title of the ramdisk's menu entry.
const ramdiskTitle = "Provisioner ramdisk"

// maxRamdiskCmdline bounds what is read of RamdiskCmdline: a kernel command line is at
// most a few KiB, and the file sits on a partition anyone with the disk could have changed.
const maxRamdiskCmdline = 64 << 10

// ErrNoRamdisk is matched by ReadRamdisk's error when the boot directory keeps no ramdisk.
var ErrNoRamdisk = errors.New("no ramdisk kept on the node")

// RamdiskEntry is the menu entry that boots the kept ramdisk.
type RamdiskEntry struct {
	// BootUUID is the filesystem holding RamdiskDir (the multiboot filesystem).
	BootUUID string
	// Args are the kernel words after the kernel's path: the base words of
	// RamdiskCmdline, and the provisioner.* words of what the ramdisk is to do, if any.
	Args []string
}

// RenderRamdiskEntry returns ramdisk.cfg: one menuentry with the id RamdiskEntryID that
// boots RamdiskKernel and RamdiskInitrd from the filesystem BootUUID with e's words, each
// quoted for grub's shell syntax as Render quotes them.
func RenderRamdiskEntry(e RamdiskEntry) []byte {
	var b bytes.Buffer
	b.WriteString("# ramdisk.cfg written by the provisioner: the kept deploy ramdisk, sourced by grub.cfg.\n")
	fmt.Fprintf(&b, "menuentry %s --id %s {\n", grubQuoteAlways(ramdiskTitle), grubQuoteAlways(RamdiskEntryID))
	b.WriteString("\tinsmod part_gpt\n\tinsmod ext2\n")
	fmt.Fprintf(&b, "\tsearch --no-floppy --fs-uuid --set=root %s\n", grubQuote(e.BootUUID))
	b.WriteString("\tlinux " + grubQuote("/"+RamdiskKernel))
	for _, w := range e.Args {
		b.WriteString(" " + grubQuote(w))
	}
	b.WriteString("\n")
	fmt.Fprintf(&b, "\tinitrd %s\n", grubQuote("/"+RamdiskInitrd))
	b.WriteString("}\n")
	return b.Bytes()
}

// WriteRamdiskEntry replaces RamdiskCfgPath in the boot directory dir with e's entry, as
// WriteFileAtomic does (a power cut leaves the old entry or the new one), confined to dir:
// a symlink or device planted on the way is refused. Once written, the entry is in the
// menu of every grub.cfg rendered with Config.Ramdisk.
func WriteRamdiskEntry(ctx context.Context, dir string, e RamdiskEntry) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("writing the ramdisk's menu entry: %w", context.Cause(ctx))
	}
	d, err := confine.Open(dir)
	if err != nil {
		return fmt.Errorf("writing the ramdisk's menu entry: %w", err)
	}
	defer d.Close()
	if err := d.MkdirAll(DefaultGrubDir, 0o755); err != nil {
		return fmt.Errorf("writing the ramdisk's menu entry: %w", err)
	}
	return d.WriteFileAtomic(RamdiskCfgPath, RenderRamdiskEntry(e), bootFilePerm, nil)
}

// RamdiskInfo is the ramdisk a boot directory keeps.
type RamdiskInfo struct {
	// KernelBytes and InitrdBytes are the sizes of RamdiskKernel and RamdiskInitrd.
	KernelBytes, InitrdBytes int64
	// Cmdline are the base kernel words of RamdiskCmdline.
	Cmdline []string
}

// ReadRamdisk reads what the boot directory dir keeps of the ramdisk. A directory without
// the kernel or the initramfs gives an error matching ErrNoRamdisk; one that is not a
// regular file (a symlink, a FIFO) is refused as confine refuses it.
func ReadRamdisk(dir string) (*RamdiskInfo, error) {
	d, err := confine.Open(dir)
	if err != nil {
		return nil, fmt.Errorf("reading the kept ramdisk: %w", err)
	}
	defer d.Close()
	info := &RamdiskInfo{}
	for _, f := range []struct {
		name string
		size *int64
	}{{RamdiskKernel, &info.KernelBytes}, {RamdiskInitrd, &info.InitrdBytes}} {
		fi, err := d.Lstat(f.name)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			return nil, fmt.Errorf("%s: %w", d.Path(f.name), ErrNoRamdisk)
		case err != nil:
			return nil, fmt.Errorf("reading the kept ramdisk: %w", err)
		case !fi.Mode().IsRegular():
			return nil, fmt.Errorf("reading the kept ramdisk: %w", d.CheckFile(f.name))
		}
		*f.size = fi.Size()
	}
	data, err := d.ReadFile(RamdiskCmdline, maxRamdiskCmdline)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		// A ramdisk kept without its words boots with none.
	case err != nil:
		return nil, fmt.Errorf("reading the kept ramdisk: %w", err)
	default:
		info.Cmdline = kernelWords(string(data))
	}
	return info, nil
}

// FormatRamdiskCmdline is RamdiskCmdline's content for the base words: one line.
func FormatRamdiskCmdline(words []string) []byte {
	return []byte(strings.Join(words, " ") + "\n")
}

// KernelWords splits a kernel command line (/proc/cmdline's content) into its words the
// way the kernel does: at blanks, except inside double quotes, which stay in the word.
func KernelWords(cmdline string) []string { return kernelWords(cmdline) }
