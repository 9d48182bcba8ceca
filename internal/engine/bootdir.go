package engine

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/provisioner/provisioner/bootloader"
	"github.com/provisioner/provisioner/internal/confine"
	"github.com/provisioner/provisioner/internal/disk"
	"github.com/provisioner/provisioner/internal/run"
	"github.com/provisioner/provisioner/partition"
	"golang.org/x/sys/unix"
)

// multibootLabel is the multiboot partition's GPT name and filesystem label (the
// planner's), by which a deployed node finds it.
const multibootLabel = "multiboot"

// BootDirOptions say where list, switch-default and history find the boot files.
type BootDirOptions struct {
	// Dir is a directory already holding boot-info.json (--boot-dir).
	Dir string
	// Device is a disk, partition or disk-image file to look in, offline (--device).
	Device string
	// Writable mounts read-write (switch-default); otherwise read-only.
	Writable bool
	Env      partition.Env
	// TmpDir holds the temporary mount points ("": the system's temporary directory).
	TmpDir string
	// LockWait bounds the wait for another run's lock on the disk, image file or boot
	// directory (0: try once); then OpenBootDir fails with an error matching
	// disk.ErrLocked.
	LockWait time.Duration
}

// lockMode is the mode of every lock a BootDir takes: a writer excludes everyone, readers
// only writers.
func (o BootDirOptions) lockMode() disk.LockMode {
	if o.Writable {
		return disk.Exclusive
	}
	return disk.Shared
}

// BootDir is the directory holding boot-info.json, opened for use: locked, and mounted
// if it was not, until Close.
type BootDir struct {
	// Path is the directory holding boot-info.json.
	Path string
	// Source says where it is, for messages ("/dev/sda2 (multiboot)", "/boot").
	Source string
	// Live is set when the boot files belong to the running system (neither --device nor
	// --boot-dir), so "booted now" means something.
	Live bool
	// Disk is the whole disk holding the boot files: the block device, or the loop device
	// a disk-image file given with --device is attached to; "" with --boot-dir.
	Disk    string
	release []func(context.Context) error
	// held are the files (device and inode) locked until Close: flock locks of one
	// process on two descriptors of a file exclude each other, so a path locked already
	// is not locked again.
	held map[[2]uint64]bool
}

// Close releases what OpenBootDir set up, in reverse: the directory's lock, the mount,
// the loop device, the disk's or image file's lock.
func (b *BootDir) Close(ctx context.Context) error {
	var errs []error
	for i := len(b.release) - 1; i >= 0; i-- {
		errs = append(errs, b.release[i](ctx))
	}
	b.release = nil
	return errors.Join(errs...)
}

// hasBootInfo reports whether dir holds a boot-info.json.
func hasBootInfo(dir string) bool {
	fi, err := os.Stat(filepath.Join(dir, bootloader.BootInfoPath))
	return err == nil && fi.Mode().IsRegular()
}

// bootInfoIn reports whether the directory rel of a filesystem mounted at mnt holds a
// boot-info.json, and returns its host path. rel must be a real directory: on a single
// image's root, boot/ comes from the image, and a symlink there (boot -> /etc) would lead
// list and switch-default to the host's files.
func bootInfoIn(mnt, rel string) (string, bool) {
	d, err := confine.Open(mnt)
	if err != nil {
		return "", false
	}
	defer d.Close()
	if d.CheckDir(rel) != nil {
		return "", false
	}
	fi, err := d.Lstat(path.Join(rel, bootloader.BootInfoPath))
	if err != nil || !fi.Mode().IsRegular() {
		return "", false
	}
	return d.Path(rel), true
}

// OpenBootDir finds the boot files:
//   - with Dir, there;
//   - with Device (offline): a disk-image file is attached to a loop device; the
//     partition named "multiboot" is used, else the first Linux filesystem holding
//     boot-info.json at its root or in boot/ (a single image's root or /boot volume);
//   - on the running system: a mounted multiboot filesystem, else one found by its
//     label (mounted privately at a temporary directory), else /boot/boot-info.json of
//     a single-image node.
//
// It locks (exclusive when Writable, shared otherwise, waiting at most LockWait) first
// the disk-image file or the whole disk holding the boot files, as a deploy does, then
// the boot directory itself: the disk's lock keeps a deploy and a switch apart, the
// directory's lock two runs that reach one filesystem through different mounts or
// --boot-dir. Always in this order, so two runs never wait for each other in a circle.
func OpenBootDir(ctx context.Context, o BootDirOptions) (*BootDir, error) {
	var b *BootDir
	var err error
	switch {
	case o.Dir != "" && o.Device != "":
		return nil, Usagef("--boot-dir and --device exclude each other")
	case o.Dir != "":
		if !hasBootInfo(o.Dir) {
			return nil, Environmentf("--boot-dir %s: no %s there", o.Dir, bootloader.BootInfoPath)
		}
		b = &BootDir{Path: o.Dir, Source: o.Dir}
	case o.Device != "":
		b, err = openDevice(ctx, o)
	default:
		b, err = openLive(ctx, o)
	}
	if err != nil {
		return nil, err
	}
	if err := b.lock(ctx, o, b.Path, "boot files in "+b.Source); err != nil {
		b.Close(context.WithoutCancel(ctx))
		return nil, err
	}
	return b, nil
}

// lock takes o's lock on path (a disk, an image file, a directory) until Close; what
// says whose lock it is in the error.
func (b *BootDir) lock(ctx context.Context, o BootDirOptions, path, what string) error {
	var st unix.Stat_t
	key := [2]uint64{}
	if unix.Stat(path, &st) == nil {
		key = [2]uint64{uint64(st.Dev), st.Ino}
		if b.held[key] {
			return nil
		}
	}
	l, err := disk.LockPath(ctx, path, o.lockMode(), o.LockWait)
	if err != nil {
		return Environmentf("%s: %w", what, err)
	}
	b.release = append(b.release, func(context.Context) error { return l.Release() })
	if key != [2]uint64{} {
		if b.held == nil {
			b.held = map[[2]uint64]bool{}
		}
		b.held[key] = true
	}
	return nil
}

// openLive looks on the running system.
func openLive(ctx context.Context, o BootDirOptions) (_ *BootDir, err error) {
	mounts, err := o.Env.Sys.Mounts()
	if err != nil {
		return nil, Environmentf("%w", err)
	}
	devs, err := labelled(ctx, o.Env)
	if err != nil {
		return nil, err
	}
	switch {
	case len(devs) > 1:
		return nil, Environmentf("several multiboot filesystems: %s; choose one with --device", strings.Join(devs, ", "))
	case len(devs) == 1:
		dev := canonicalDev(devs[0])
		b := &BootDir{Source: devs[0] + " (multiboot)", Live: true}
		defer func() {
			if err != nil {
				b.Close(context.WithoutCancel(ctx))
			}
		}()
		// The whole disk, as a deploy locks it.
		whole, err := o.Env.Sys.ParentDisk(devs[0])
		if err != nil {
			return nil, Environmentf("multiboot partition %s: %w", devs[0], err)
		}
		if err := b.lock(ctx, o, whole, "multiboot partition "+devs[0]); err != nil {
			return nil, err
		}
		b.Disk = whole
		// Already mounted (by the operator, or an image's fstab): use it there, since a
		// second mount of the same ext4 is the same filesystem anyway and unmounting it
		// afterwards would surprise whoever mounted it.
		for _, m := range mounts {
			if node, err := o.Env.Sys.DevNode(m.DevNum); err == nil && canonicalDev(node) == dev && hasBootInfo(m.Point) {
				b.Path, b.Source = m.Point, devs[0]+" (multiboot, mounted at "+m.Point+")"
				return b, nil
			}
		}
		if err := b.mount(ctx, o, devs[0], ""); err != nil {
			return nil, err
		}
		if !hasBootInfo(b.Path) {
			return nil, Environmentf("%s has label %s but no %s", devs[0], multibootLabel, bootloader.BootInfoPath)
		}
		return b, nil
	}
	if hasBootInfo("/boot") {
		return &BootDir{Path: "/boot", Source: "/boot", Live: true}, nil
	}
	return nil, Environmentf("no boot files found: no filesystem labelled %s, and no /boot/%s (use --device or --boot-dir)", multibootLabel, bootloader.BootInfoPath)
}

// labelled lists the devices holding the multiboot filesystem: partitions whose GPT name
// is "multiboot" (from sysfs, so a minimal system without blkid finds them), and, where
// blkid is installed, filesystems labelled so (a multiboot partition renamed by hand).
func labelled(ctx context.Context, env partition.Env) ([]string, error) {
	set := map[string]bool{}
	named, err := env.Sys.PartitionsNamed(multibootLabel)
	if err != nil {
		return nil, Environmentf("looking for the multiboot partition: %w", err)
	}
	for _, d := range named {
		set[canonicalDev(d)] = true
	}
	for _, tok := range []string{"LABEL=" + multibootLabel, "PARTLABEL=" + multibootLabel} {
		res, err := env.Run.Run(ctx, run.Cmd{Argv: []string{"blkid", "-o", "device", "-t", tok}})
		var rerr *run.Error
		if errors.Is(err, run.ErrNotFound) || errors.As(err, &rerr) && rerr.ExitCode == 2 {
			continue // no blkid here, or nothing matches
		}
		if err != nil {
			return nil, Environmentf("looking for the multiboot partition: %w", err)
		}
		for _, line := range strings.Fields(string(res.Stdout)) {
			set[canonicalDev(line)] = true
		}
	}
	out := make([]string, 0, len(set))
	for d := range set {
		out = append(out, d)
	}
	sort.Strings(out)
	return out, nil
}

// openDevice looks at a disk, partition or disk-image file given with --device.
func openDevice(ctx context.Context, o BootDirOptions) (_ *BootDir, err error) {
	b := &BootDir{}
	defer func() {
		if err != nil {
			b.Close(context.WithoutCancel(ctx))
		}
	}()
	g, err := disk.Probe(ctx, o.Device)
	if err != nil {
		return nil, Environmentf("--device %s: %w", o.Device, err)
	}
	dev := o.Device
	if g.Block {
		// The whole disk, as a deploy locks it, also when a partition is named.
		whole, err := o.Env.Sys.ParentDisk(o.Device)
		if err != nil {
			return nil, Environmentf("--device %s: %w", o.Device, err)
		}
		if err := b.lock(ctx, o, whole, "--device "+o.Device); err != nil {
			return nil, err
		}
		b.Disk = whole
	} else {
		if dev, err = b.attachImage(ctx, o, g); err != nil {
			return nil, err
		}
		b.Disk = dev
	}
	table, err := partition.ReadTable(ctx, dev, g.SectorSize)
	if err != nil || len(table.Partitions) == 0 {
		// No GPT: the device may be a partition (or a bare filesystem image) itself.
		info, perr := probeFS(ctx, o.Env.Run, dev)
		if perr != nil || !bootFSType(info.Type) {
			return nil, Environmentf("--device %s: no GPT (%v) and no Linux filesystem", o.Device, err)
		}
		return b, b.tryMount(ctx, o, dev, info.Type, o.Device)
	}
	parts := make([]disk.Part, len(table.Partitions))
	present := true
	for i, p := range table.Partitions {
		parts[i] = disk.Part{Number: p.Number, Start: p.Start * g.SectorSize, Size: (p.End - p.Start + 1) * g.SectorSize}
		if _, err := os.Stat(disk.PartitionPath(dev, p.Number)); err != nil {
			present = false
		}
	}
	// A running system already has the nodes (and may be using them); our loop device,
	// or a disk on a kernel without partition-table parsers, needs them made.
	if !present {
		if err := o.Env.Sys.Reread(ctx, dev, parts); err != nil {
			return nil, Environmentf("--device %s: %w", o.Device, err)
		}
	}
	// The multiboot partition first, then the others in table order.
	order := append([]partition.ExistingPartition(nil), table.Partitions...)
	sort.SliceStable(order, func(i, j int) bool { return order[i].Name == multibootLabel && order[j].Name != multibootLabel })
	var tried []string
	for _, p := range order {
		node := disk.PartitionPath(dev, p.Number)
		info, err := probeFS(ctx, o.Env.Run, node)
		if err != nil || !bootFSType(info.Type) {
			continue
		}
		err = b.tryMount(ctx, o, node, info.Type, fmt.Sprintf("%s partition %d (%s)", o.Device, p.Number, p.Name))
		if err == nil {
			return b, nil
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
		tried = append(tried, fmt.Sprint(p.Number))
	}
	return nil, Environmentf("--device %s: no partition holds %s (looked in partitions %s)", o.Device, bootloader.BootInfoPath, strings.Join(tried, ", "))
}

// attachImage locks the disk-image file o.Device, refuses it when a loop device bound to
// it is in use, and attaches it to a loop device of its own (read-only unless Writable,
// so list works on a file nobody may write); it returns the loop device.
func (b *BootDir) attachImage(ctx context.Context, o BootDirOptions, g disk.Geometry) (string, error) {
	if err := b.lock(ctx, o, o.Device, "--device "+o.Device); err != nil {
		return "", err
	}
	if err := o.Env.Sys.CheckFileNotBusy(ctx, o.Device); err != nil {
		if errors.Is(err, disk.ErrBusy) {
			return "", Environmentf("--device %s: %w (to use a filesystem mounted from it, give --boot-dir with its mount point)", o.Device, err)
		}
		return "", Environmentf("--device %s: %w", o.Device, err)
	}
	attach := disk.AttachLoopReadOnly
	if o.Writable {
		attach = disk.AttachLoop
	}
	loop, err := attach(ctx, o.Device, g.SectorSize)
	if o.Writable && (errors.Is(err, fs.ErrPermission) || errors.Is(err, unix.EROFS)) {
		return "", Environmentf("--device %s cannot be written (%w): list and history can read it, changing the default needs write access", o.Device, err)
	}
	if err != nil {
		return "", Environmentf("--device %s: attaching to a loop device: %w", o.Device, err)
	}
	b.release = append(b.release, loop.Detach)
	return loop.Path, nil
}

// bootFSType reports whether grub's directory can be on a filesystem of this type.
func bootFSType(t string) bool {
	switch t {
	case "ext2", "ext3", "ext4", "xfs", "btrfs":
		return true
	}
	return false
}

// tryMount mounts node and settles on the directory with boot-info.json: the root (a
// multiboot or a separate /boot filesystem) or boot/ (a single image's root). When
// neither has one it unmounts and returns an error matching fs.ErrNotExist.
func (b *BootDir) tryMount(ctx context.Context, o BootDirOptions, node, fsType, source string) error {
	n := len(b.release)
	if err := b.mount(ctx, o, node, fsType); err != nil {
		return err
	}
	mnt := b.Path
	for _, rel := range []string{".", "boot"} {
		if dir, ok := bootInfoIn(mnt, rel); ok {
			b.Path, b.Source = dir, source
			return nil
		}
	}
	// Undo just this mount.
	for i := len(b.release) - 1; i >= n; i-- {
		b.release[i](context.WithoutCancel(ctx))
	}
	b.release = b.release[:n]
	b.Path = ""
	return fs.ErrNotExist
}

// mount mounts dev privately at a new temporary directory, which becomes b.Path.
func (b *BootDir) mount(ctx context.Context, o BootDirOptions, dev, fsType string) error {
	if fsType == "" {
		if info, err := probeFS(ctx, o.Env.Run, dev); err == nil && info.Type != "" {
			fsType = info.Type
		} else if fsType = disk.SniffFS(dev); fsType == "" {
			return Environmentf("%s: cannot tell its filesystem type (no blkid, unknown superblock)", dev)
		}
	}
	mnt, err := os.MkdirTemp(o.TmpDir, "provisioner-boot-")
	if err != nil {
		return Environmentf("%w", err)
	}
	if err := disk.MountPrivate(ctx, dev, mnt, fsType, o.Writable); err != nil {
		os.Remove(mnt)
		if !o.Writable && disk.NeedsJournalRecovery(dev) && disk.ReadOnlyDevice(dev) {
			return Environmentf("%w: its ext4 journal needs recovery, which a read-only device does not allow (switch-default, which mounts it read-write, replays it)", err)
		}
		return Environmentf("%w", err)
	}
	b.Path = mnt
	b.release = append(b.release, func(ctx context.Context) error {
		serr := error(nil)
		if o.Writable {
			serr = disk.SyncFS(mnt)
		}
		if err := disk.Unmount(ctx, mnt); err != nil {
			return err
		}
		os.Remove(mnt)
		return serr
	})
	return nil
}

// BootedRootUUID returns the filesystem UUID of the running system's root: root=UUID= on
// the kernel command line (what our menu entries pass), else the root mount's device as
// blkid sees it; "" when it cannot be told (a ramdisk's rootfs has none).
func BootedRootUUID(ctx context.Context, env partition.Env) string {
	if u := env.Sys.CmdlineRootUUID(); u != "" {
		return u
	}
	mounts, err := env.Sys.Mounts()
	if err != nil {
		return ""
	}
	var num string
	for _, m := range mounts {
		if m.Point == "/" {
			num = m.DevNum // the last mount on / is the one in use
		}
	}
	if num == "" || strings.HasPrefix(num, "0:") {
		return "" // not a block device (tmpfs, rootfs, overlay)
	}
	node, err := env.Sys.DevNode(num)
	if err != nil {
		return ""
	}
	info, err := probeFS(ctx, env.Run, node)
	if err != nil {
		return ""
	}
	return info.UUID
}
