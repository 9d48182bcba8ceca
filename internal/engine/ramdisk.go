package engine

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/provisioner/provisioner/bootloader"
	"github.com/provisioner/provisioner/deploy"
	"github.com/provisioner/provisioner/internal/confine"
	"github.com/provisioner/provisioner/partition"
	"github.com/provisioner/provisioner/schema"
	"golang.org/x/sys/unix"
)

// The files of a ramdisk directory, as `make ramdisk` writes them.
const (
	ramdiskKernelName = "vmlinuz"
	ramdiskInitrdName = "initramfs.cpio.zst"
)

// ErrRamdiskNoRoom is matched by KeepRamdisk's refusal of a ramdisk that does not fit the
// boot filesystem; the error gives the bytes needed and the bytes free.
var ErrRamdiskNoRoom = errors.New("no room for the ramdisk")

// KeepRamdiskOptions say which ramdisk KeepRamdisk keeps, and where.
type KeepRamdiskOptions struct {
	// Fetcher fetches the files and the checksum file (nil: defaults).
	Fetcher *deploy.Fetcher
	// URL is the directory holding vmlinuz and initramfs.cpio.zst (http, https, file).
	URL string
	// Checksum is the URL of a checksum file listing both files by name, "" for none.
	Checksum string
	// Dir is the root of the mounted boot filesystem (the multiboot partition).
	Dir string
	// BootUUID is that filesystem's UUID, which the ramdisk's menu entry searches for.
	BootUUID string
	// Cmdline are the running ramdisk's kernel words (/proc/cmdline's); BaseKernelWords
	// of them are kept as the ramdisk entry's words.
	Cmdline []string
	// Reserve is room to leave free besides the ramdisk: a deploy keeps the ramdisk before
	// grub's files are installed on the same filesystem.
	Reserve uint64
}

// KeepRamdisk keeps the deploy ramdisk in the boot filesystem at o.Dir, so that the node
// can boot it again without the network boot: it fetches vmlinuz and initramfs.cpio.zst
// from o.URL into bootloader.RamdiskDir, verified against o.Checksum's file when given,
// writes the base words (bootloader.RamdiskCmdline) and the ramdisk's menu entry
// (bootloader.RamdiskCfgPath, which a grub.cfg rendered with Config.Ramdisk sources), and
// returns what is kept.
//
// Nothing of the ramdisk is written unless both files fit: the sizes the server announces
// (or the files have) are compared with the filesystem's free space first, and the refusal,
// matching ErrRamdiskNoRoom, gives both numbers. The files are written to temporary names
// and renamed only once both are complete and verified, so a cut fetch or a checksum
// mismatch leaves the files kept before, if any, and no partial one.
func KeepRamdisk(ctx context.Context, o KeepRamdiskOptions) (*bootloader.RamdiskInfo, error) {
	if o.URL == "" {
		return nil, Usagef("keeping the ramdisk: no URL")
	}
	f := o.Fetcher
	if f == nil {
		f = &deploy.Fetcher{}
	}
	files := []*ramdiskFile{
		{src: ramdiskSource(o.URL, ramdiskKernelName), target: bootloader.RamdiskKernel},
		{src: ramdiskSource(o.URL, ramdiskInitrdName), target: bootloader.RamdiskInitrd},
	}
	if err := resolveRamdiskDigests(ctx, f, o.Checksum, files); err != nil {
		return nil, err
	}
	d, err := confine.Open(o.Dir)
	if err != nil {
		return nil, fmt.Errorf("keeping the ramdisk: %w", err)
	}
	defer d.Close()
	defer closeRamdiskFiles(files)
	for _, rf := range files {
		if rf.stream, err = f.Open(ctx, rf.src); err != nil {
			return nil, &classified{deploy.ErrImage, fmt.Errorf("keeping the ramdisk: %w", err)}
		}
	}
	if err := checkRamdiskRoom(d, files, o.Reserve); err != nil {
		return nil, err
	}
	if err := d.MkdirAll(bootloader.RamdiskDir, 0o755); err != nil {
		return nil, treeErr(fmt.Errorf("keeping the ramdisk: %w", err))
	}
	if err := fetchRamdiskFiles(d, files); err != nil {
		return nil, err
	}
	base := BaseKernelWords(o.Cmdline)
	if err := d.WriteFileAtomic(bootloader.RamdiskCmdline, bootloader.FormatRamdiskCmdline(base), 0o644, nil); err != nil {
		return nil, roomErr(d, fmt.Errorf("keeping the ramdisk: %w", err))
	}
	if err := bootloader.WriteRamdiskEntry(ctx, o.Dir, bootloader.RamdiskEntry{BootUUID: o.BootUUID, Args: base}); err != nil {
		return nil, roomErr(d, treeErr(err))
	}
	return bootloader.ReadRamdisk(o.Dir)
}

// keepRamdisk keeps the spec's ramdisk on the multiboot filesystem mounted at loc, with the
// base words of the running kernel's command line.
func (b *bootStep) keepRamdisk(ctx context.Context, loc bootloader.Location) error {
	if b.l.Multiboot == nil {
		return fmt.Errorf("keeping the ramdisk: the plan has no multiboot partition")
	}
	read := b.opts.KernelCmdline
	if read == nil {
		read = procCmdline
	}
	cmdline, err := read()
	if err != nil {
		return Environmentf("keeping the ramdisk: reading the kernel command line: %w", err)
	}
	b.events.emit(Event{Message: "keeping the deploy ramdisk from " + b.spec.Ramdisk.URL + " on the multiboot partition"})
	info, err := KeepRamdisk(ctx, KeepRamdiskOptions{Fetcher: b.fetcher, URL: b.spec.Ramdisk.URL, Checksum: b.spec.Ramdisk.Checksum,
		Dir: loc.Dir, BootUUID: loc.FSUUID, Cmdline: bootloader.KernelWords(cmdline), Reserve: grubReserve(b.opts.GrubLib, b.l.BootMode)})
	if err != nil {
		return fmt.Errorf("multiboot partition %s: %w", loc.FSUUID, err)
	}
	b.log.Info("deploy ramdisk kept", "kernel_bytes", info.KernelBytes, "initrd_bytes", info.InitrdBytes, "cmdline", strings.Join(info.Cmdline, " "))
	return nil
}

// grubReserve estimates the room grub's files take in its directory once installed for
// mode, from grub's platform files in lib ("": /usr/lib/grub): the BIOS install copies the
// i386-pc directory's modules and adds fonts and translations (8.9 MB in all with Debian
// 12's grub, of which 1.9 MB modules); the UEFI one copies the x86_64-efi modules
// (2.6 MB). The ramdisk is kept before grub is installed, and must leave that room.
func grubReserve(lib, mode string) uint64 {
	if lib == "" {
		lib = "/usr/lib/grub"
	}
	var n uint64
	if mode == schema.BootBIOS || mode == schema.BootBoth {
		n += filesSize(filepath.Join(lib, "i386-pc"), "*") + 8*schema.MiB
	}
	if mode == schema.BootUEFI || mode == schema.BootBoth {
		n += filesSize(filepath.Join(lib, "x86_64-efi"), "*.mod") + filesSize(filepath.Join(lib, "x86_64-efi"), "*.lst") + schema.MiB
	}
	return n
}

// filesSize is the size of dir's regular files matching pattern, 0 when there are none.
func filesSize(dir, pattern string) uint64 {
	names, _ := filepath.Glob(filepath.Join(dir, pattern))
	var n uint64
	for _, name := range names {
		if fi, err := os.Lstat(name); err == nil && fi.Mode().IsRegular() {
			n += uint64(fi.Size())
		}
	}
	return n
}

// procCmdline returns the running kernel's command line.
func procCmdline() (string, error) {
	data, err := os.ReadFile("/proc/cmdline")
	return string(data), err
}

// ramdiskFile is one file of the ramdisk being kept.
type ramdiskFile struct {
	src, target string
	digest      deploy.Digest
	stream      *deploy.Stream
	tmp         *confine.TempFile
}

// ramdiskSource is the URL of the file name in the ramdisk directory dir.
func ramdiskSource(dir, name string) string {
	return strings.TrimRight(dir, "/") + "/" + name
}

// resolveRamdiskDigests reads each file's digest from the checksum file at checksum ("":
// none). One digest cannot cover two files, so checksum must name a file.
func resolveRamdiskDigests(ctx context.Context, f *deploy.Fetcher, checksum string, files []*ramdiskFile) error {
	if checksum == "" {
		return nil
	}
	if !strings.Contains(checksum, "/") {
		return Usagef("ramdisk checksum %q: want the URL of a checksum file listing %s and %s, not one digest", checksum, ramdiskKernelName, ramdiskInitrdName)
	}
	for _, rf := range files {
		dg, err := f.ResolveDigest(ctx, checksum, rf.src)
		if err != nil {
			return &classified{deploy.ErrImage, fmt.Errorf("keeping the ramdisk: %w", err)}
		}
		rf.digest = dg
	}
	return nil
}

func closeRamdiskFiles(files []*ramdiskFile) {
	for _, rf := range files {
		if rf.stream != nil {
			rf.stream.Close()
		}
		if rf.tmp != nil {
			rf.tmp.Abort()
		}
	}
}

// checkRamdiskRoom refuses, with the numbers, files whose announced sizes do not fit the
// free space of d's filesystem. The files kept before stay until the new ones are renamed
// over them, so their room does not count as free. A file of unknown size is checked as it
// is written (roomErr).
func checkRamdiskRoom(d *confine.Dir, files []*ramdiskFile, reserve uint64) error {
	free, bsize, err := freeBytes(d.Path("."))
	if err != nil {
		return fmt.Errorf("keeping the ramdisk: %w", err)
	}
	var needed uint64
	var parts []string
	for _, rf := range files {
		n := rf.stream.Size()
		if n < 0 {
			return nil
		}
		needed += roundUp(uint64(n), bsize)
		parts = append(parts, fmt.Sprintf("%s %s", path.Base(rf.target), schema.HumanBytes(uint64(n))))
	}
	// The base words and the menu entry take a block each, and their temporary files too.
	needed += 4 * bsize
	if reserve > 0 {
		needed += reserve
		parts = append(parts, fmt.Sprintf("%s for grub's files", schema.HumanBytes(reserve)))
	}
	if needed <= free {
		return nil
	}
	return &classified{ErrWrite, fmt.Errorf("keeping the ramdisk in %s: %w: it needs %d bytes (%s; %s) and the filesystem has %d bytes (%s) free; make the multiboot partition larger (multiboot_size)",
		d.Path(bootloader.RamdiskDir), ErrRamdiskNoRoom, needed, strings.Join(parts, ", "), schema.HumanBytes(needed), free, schema.HumanBytes(free))}
}

// freeBytes returns the bytes of dir's filesystem that statfs counts as available (root
// could use the reserved blocks too, but they are left to the filesystem) and its block size.
func freeBytes(dir string) (free, bsize uint64, err error) {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return 0, 0, fmt.Errorf("statfs %s: %w", dir, err)
	}
	return st.Bavail * uint64(st.Bsize), uint64(st.Bsize), nil
}

func roundUp(n, to uint64) uint64 {
	if to == 0 {
		return n
	}
	return (n + to - 1) / to * to
}

// fetchRamdiskFiles streams each file, verified, into a temporary file beside its target,
// and renames both once both are complete: a failure leaves no partial file and the kept
// ones as they were.
func fetchRamdiskFiles(d *confine.Dir, files []*ramdiskFile) error {
	for _, rf := range files {
		tf, err := d.CreateTemp(rf.target, 0o644)
		if err != nil {
			return treeErr(fmt.Errorf("keeping the ramdisk: %w", err))
		}
		rf.tmp = tf
		w := &writeErr{w: tf}
		if _, err := io.Copy(w, deploy.Verify(rf.stream, rf.digest, rf.src)); err != nil {
			if w.err == nil {
				// The stream's and the verifier's errors name the source.
				return &classified{deploy.ErrImage, fmt.Errorf("keeping the ramdisk: %w", err)}
			}
			return roomErr(d, &classified{ErrWrite, fmt.Errorf("keeping the ramdisk: writing %s: %w", d.Path(rf.target), err)})
		}
	}
	for _, rf := range files {
		if err := rf.tmp.Commit(); err != nil {
			return roomErr(d, &classified{ErrWrite, fmt.Errorf("keeping the ramdisk: %w", err)})
		}
	}
	if err := d.SyncDir(bootloader.RamdiskDir); err != nil {
		return &classified{ErrWrite, fmt.Errorf("keeping the ramdisk: %w", err)}
	}
	return nil
}

// roomErr adds the free space to an error of a filesystem that filled up, which then
// matches ErrRamdiskNoRoom.
func roomErr(d *confine.Dir, err error) error {
	if !errors.Is(err, syscall.ENOSPC) {
		return err
	}
	free, _, serr := freeBytes(d.Path("."))
	if serr != nil {
		return &classified{ErrWrite, fmt.Errorf("%w (%w)", err, ErrRamdiskNoRoom)}
	}
	return &classified{ErrWrite, fmt.Errorf("%w (%w: %d bytes free); make the multiboot partition larger (multiboot_size)", err, ErrRamdiskNoRoom, free)}
}

// writeErr remembers the error of its writer, so that a copy's failure is known to be the
// target's and not the source's.
type writeErr struct {
	w   io.Writer
	err error
}

func (w *writeErr) Write(p []byte) (int, error) {
	n, err := w.w.Write(p)
	if err != nil {
		w.err = err
	}
	return n, err
}

// BaseKernelWords returns the words of a ramdisk's kernel command line that a later boot
// of it keeps (console settings, network and driver options): all but what only that one
// boot meant: the provisioner.* words (its spec, token and callback), BOOTIF= (the PXE
// interface), initrd= and BOOT_IMAGE= (its loader's file names) and root=.
func BaseKernelWords(words []string) []string {
	out := []string{}
	for _, w := range words {
		key, _, _ := strings.Cut(w, "=")
		switch {
		case strings.HasPrefix(key, "provisioner."), key == "BOOTIF", key == "initrd", key == "BOOT_IMAGE", key == "root":
			continue
		}
		out = append(out, w)
	}
	return out
}

// checkRamdiskPlan refuses, before a deploy writes anything, a ramdisk that surely does not
// fit its planned multiboot partition: the files' sizes as the server announces them (the
// checksum file is fetched too, so that a wrong URL fails now), plus the room of grub's
// files, against what ext4 leaves of the partition for files. That is about 85% of it less
// 4 MiB (measured with this machine's mke2fs: 23.2 MiB of 32, 81.2 MiB of 100, after the 5%
// reserved blocks, the journal and the inode tables); the estimate allows 87%, so that only
// a clear misfit is refused here, and asks for a size by 83%, so that the size it names
// passes. The exact check against the made filesystem's free space comes when the ramdisk
// is written.
func checkRamdiskPlan(ctx context.Context, f *deploy.Fetcher, spec *schema.Spec, l *partition.Layout, grubLib string) error {
	if !spec.KeepsRamdisk() || l.Multiboot == nil {
		return nil
	}
	var part *partition.Partition
	for _, p := range l.Disks[0].Partitions {
		if p.Role == partition.RoleMultiboot {
			part = p
		}
	}
	if part == nil {
		return nil
	}
	files := []*ramdiskFile{
		{src: ramdiskSource(spec.Ramdisk.URL, ramdiskKernelName), target: bootloader.RamdiskKernel},
		{src: ramdiskSource(spec.Ramdisk.URL, ramdiskInitrdName), target: bootloader.RamdiskInitrd},
	}
	if err := resolveRamdiskDigests(ctx, f, spec.Ramdisk.Checksum, files); err != nil {
		return err
	}
	needed := grubReserve(grubLib, l.BootMode)
	for _, rf := range files {
		s, err := f.Open(ctx, rf.src)
		if err != nil {
			return &classified{deploy.ErrImage, fmt.Errorf("keeping the ramdisk: %w", err)}
		}
		size := s.Size()
		s.Close()
		if size < 0 {
			return nil
		}
		needed += uint64(size)
	}
	room := part.SizeBytes / 100 * 87
	if room > 4*schema.MiB {
		room -= 4 * schema.MiB
	}
	if needed <= room {
		return nil
	}
	want := ((needed+4*schema.MiB)/83*100 + schema.MiB - 1) / schema.MiB
	return &classified{partition.ErrLayout, fmt.Errorf("%w: the ramdisk at %s and grub's files need %d bytes (%s), and the %s multiboot partition holds at most %d bytes (%s) of files: give multiboot_size %d MiB or more",
		ErrRamdiskNoRoom, spec.Ramdisk.URL, needed, schema.HumanBytes(needed), schema.HumanBytes(part.SizeBytes), room, schema.HumanBytes(room), want)}
}
