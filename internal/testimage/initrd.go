package testimage

import (
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"path"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/klauspost/compress/gzip"
	"github.com/u-root/u-root/pkg/cpio"
)

// stage1Applets are the busybox applets stage1Init calls. test and [ are ash builtins
// already; the links cost nothing and keep the script working with a busybox built
// without them.
var stage1Applets = []string{
	"sh", "mount", "umount", "insmod", "findfs", "switch_root", "sleep", "cat",
	"poweroff", "echo", "mkdir", "test", "[",
}

// stage1Init is /init of the stage-1 initramfs. The kernel starts it
// with no PATH, hence the export. Every failure prints why and powers off, because a
// test watching the serial console must see a reason and QEMU (-no-reboot) must end,
// not hang or panic-loop. A storage image's initramfs (Options.Storage) also has
// /bin/mdadm and /bin/lvm, and the same script then assembles md arrays and activates
// volume groups while it waits for root=.
const stage1Init = `#!/bin/sh
# Stage 1 of a provisioner test image: load the virtio modules, find the root
# filesystem named by root= on the kernel command line, and switch to its /sbin/init.
export PATH=/bin
# devtmpfs first, so /dev/null and the disk nodes exist for everything below.
mount -t devtmpfs devtmpfs /dev
mount -t proc proc /proc
mount -t sysfs sysfs /sys
for m in $(cat /lib/modules/load-order); do
	insmod /lib/modules/$m || echo "stage-1: insmod $m failed"
done
root=
for a in $(cat /proc/cmdline); do
	case $a in root=*) root=${a#root=} ;; esac
done
if [ -z "$root" ]; then
	echo "stage-1: no root= on the kernel command line; powering off"
	poweroff -f
fi
# The root of a storage image may be an md array or a logical volume, which exist only
# once assembled and activated. The disks come up asynchronously, so each partition is
# handed to mdadm as it appears (incremental assembly starts an array when its last
# member arrives, never half of it too early); after 5 s an array still short of a
# member is started degraded, as a raid1 with a dead disk must still boot. Volume
# groups come after md, since a physical volume may be an array.
storage=
if [ -x /bin/mdadm ] || [ -x /bin/lvm ]; then
	storage=1
	mount -t tmpfs tmpfs /run
	mkdir -p /run/mdadm /run/lock/lvm
fi
seen=" "
activate() {
	if [ -x /bin/mdadm ]; then
		while read major minor blocks name; do
			case "$name" in "" | name | md* | dm-*) continue ;; esac
			case "$seen" in *" $name "*) continue ;; esac
			seen="$seen$name "
			mdadm --incremental --quiet /dev/$name >>/activate.log 2>&1
		done </proc/partitions
		[ "$1" = degraded ] && mdadm --incremental --run --scan >>/activate.log 2>&1
	fi
	[ -x /bin/lvm ] && lvm vgchange -ay --sysinit >>/activate.log 2>&1
}
# The disk appears asynchronously after virtio_blk loads: wait up to 10 s.
dev=
i=0
while [ $i -lt 100 ]; do
	case "$root" in
	UUID=* | LABEL=*) dev=$(findfs "$root" 2>/dev/null) ;;
	*) dev=$root ;;
	esac
	[ -n "$dev" ] && [ -b "$dev" ] && break
	if [ -n "$storage" ] && [ $((i % 5)) -eq 4 ]; then
		if [ $i -ge 50 ]; then activate degraded; else activate; fi
	fi
	sleep 0.1
	i=$((i + 1))
done
if [ -z "$dev" ] || ! [ -b "$dev" ]; then
	echo "stage-1: root device $root not found after 10 s; powering off"
	[ -f /activate.log ] && cat /activate.log
	poweroff -f
fi
if ! mount -o ro "$dev" /newroot; then
	echo "stage-1: cannot mount $dev (root=$root) read-only; powering off"
	poweroff -f
fi
# Keep /dev (the console stays open on it, and it holds the nodes of the arrays and
# logical volumes); proc and sys are remounted by the image.
mount --move /dev /newroot/dev || umount /dev
[ -n "$storage" ] && umount /run
umount /sys
umount /proc
exec switch_root /newroot /sbin/init
echo "stage-1: switch_root failed; powering off"
poweroff -f
`

// loadOrderFile lists the modules of the stage-1 initramfs, one base name a line, in
// the order /init loads them.
const loadOrderFile = "lib/modules/load-order"

// writeInitrd writes the stage-1 initramfs, a gzip'ed newc cpio, to w: busybox (the file
// at busybox) with its applet links, /init, the modules (files whose base names are
// kept) in the given order, and extra files by archive path (their parent directories
// are added). The bytes depend only on the inputs: mtimes and owners are zero, entries
// sorted, inode numbers counted.
func writeInitrd(w io.Writer, busybox string, modules []string, extra map[string]File) error {
	recs, err := stage1Records(busybox, modules)
	if err != nil {
		return err
	}
	if recs, err = addExtra(recs, extra); err != nil {
		return err
	}
	return writeNewc(w, recs)
}

// stage1Records are the records every stage-1 initramfs has: its directories, the
// console node, busybox (the file at busybox) with its applet links, /init, and the
// modules with the order in which /init loads them.
func stage1Records(busybox string, modules []string) ([]cpio.Record, error) {
	bb, err := os.ReadFile(busybox)
	if err != nil {
		return nil, fmt.Errorf("testimage: stage-1 initramfs: %w", err)
	}
	recs := []cpio.Record{
		cpio.Directory("bin", 0o755),
		cpio.Directory("dev", 0o755),
		cpio.Directory("lib", 0o755),
		cpio.Directory("lib/modules", 0o755),
		cpio.Directory("newroot", 0o755),
		cpio.Directory("proc", 0o555),
		cpio.Directory("sys", 0o555),
		// The kernel opens /dev/console for /init's stdio before /init runs, so the node
		// must be in the archive; mounting devtmpfs later would be too late.
		cpio.CharDev("dev/console", 0o600, 5, 1),
		cpio.StaticRecord(bb, cpio.Info{Name: "bin/busybox", Mode: cpio.S_IFREG | 0o755}),
		cpio.StaticFile("init", stage1Init, 0o755),
	}
	for _, a := range stage1Applets {
		recs = append(recs, cpio.Symlink("bin/"+a, "busybox"))
	}
	var order strings.Builder
	for _, m := range modules {
		data, err := os.ReadFile(m)
		if err != nil {
			return nil, fmt.Errorf("testimage: stage-1 initramfs: %w", err)
		}
		base := filepath.Base(m)
		order.WriteString(base + "\n")
		recs = append(recs, cpio.StaticRecord(data, cpio.Info{Name: "lib/modules/" + base, Mode: cpio.S_IFREG | 0o644}))
	}
	return append(recs, cpio.StaticFile(loadOrderFile, order.String(), 0o644)), nil
}

// addExtra appends the extra files to recs, by name, with the parent directories recs
// lacks; an extra file may not replace a record already there.
func addExtra(recs []cpio.Record, extra map[string]File) ([]cpio.Record, error) {
	have := map[string]bool{}
	for _, r := range recs {
		have[r.Name] = true
	}
	for _, name := range slices.Sorted(maps.Keys(extra)) {
		if !fs.ValidPath(name) || name == "." || have[name] {
			return nil, fmt.Errorf("testimage: stage-1 initramfs: extra file %q: not a clean path of its own", name)
		}
		for d := path.Dir(name); d != "." && !have[d]; d = path.Dir(d) {
			have[d] = true
			recs = append(recs, cpio.Directory(d, 0o755))
		}
		have[name] = true
		f := extra[name]
		switch {
		case f.Mode&fs.ModeSymlink != 0:
			recs = append(recs, cpio.Symlink(name, string(f.Data)))
		case f.Mode.IsRegular():
			perm := f.Mode.Perm()
			if perm == 0 {
				perm = 0o644
			}
			recs = append(recs, cpio.StaticRecord(f.Data, cpio.Info{Name: name, Mode: cpio.S_IFREG | uint64(perm)}))
		default:
			return nil, fmt.Errorf("testimage: stage-1 initramfs: extra file %s: unsupported mode %v", name, f.Mode)
		}
	}
	return recs, nil
}

// writeNewc writes recs sorted by name as a gzip'ed newc cpio archive to w.
func writeNewc(w io.Writer, recs []cpio.Record) error {
	// Sorted names put every directory before its content, which the kernel's unpacker
	// needs (it creates no missing parents).
	sort.Slice(recs, func(i, j int) bool { return recs[i].Name < recs[j].Name })
	zw, err := gzip.NewWriterLevel(w, gzip.BestCompression)
	if err != nil {
		return fmt.Errorf("testimage: stage-1 initramfs: %w", err)
	}
	cw := cpio.Newc.Writer(zw)
	for i, r := range recs {
		// Distinct inode numbers with nlink 1: the kernel's unpacker treats equal
		// (ino, nlink>1) pairs as hard links.
		r.Ino = uint64(i + 1)
		r.NLink = 1
		if r.Mode&cpio.S_IFMT == cpio.S_IFDIR {
			r.NLink = 2
		}
		if err := cw.WriteRecord(r); err != nil {
			return fmt.Errorf("testimage: stage-1 initramfs: writing %s: %w", r.Name, err)
		}
	}
	if err := cpio.WriteTrailer(cw); err != nil {
		return fmt.Errorf("testimage: stage-1 initramfs: %w", err)
	}
	if err := zw.Close(); err != nil {
		return fmt.Errorf("testimage: stage-1 initramfs: %w", err)
	}
	return nil
}
