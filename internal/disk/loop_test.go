package disk

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Loop-device tests need root and /dev/loop-control. They attach their own loop devices
// (never a fixed number: loop devices are shared with other processes on the machine) and
// detach only those, in t.Cleanup, even when a test fails.

func requireLoop(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("loop-device test skipped in -short mode")
	}
	if os.Geteuid() != 0 {
		t.Skip("loop-device test needs root (attaches loop devices, adds partitions, mounts)")
	}
	if _, err := os.Stat(loopControl); err != nil {
		t.Skipf("loop-device test needs %s: %v", loopControl, err)
	}
}

// requireTool finds an external program for a test; on CI (CI=true) a missing tool is a
// failure, elsewhere a skip.
func requireTool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s is not installed (CI must install it)", name)
		}
		t.Skipf("%s is not installed", name)
	}
	return p
}

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

func sparseFile(t *testing.T, size int64) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "disk.img")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	return p
}

// attachForTest attaches a new sparse file and registers its detach.
func attachForTest(t *testing.T, size int64, lss uint64) *Loop {
	t.Helper()
	img := sparseFile(t, size)
	l, err := AttachLoop(context.Background(), img, lss)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := l.Detach(context.Background()); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	t.Logf("attached %s to %s (sector size %d)", l.Path, img, lss)
	return l
}

func loopSysfs(l *Loop, attr string) string {
	b, _ := os.ReadFile(filepath.Join("/sys/block", filepath.Base(l.Path), attr))
	return strings.TrimSpace(string(b))
}

func TestAttachLoop(t *testing.T) {
	requireLoop(t)
	check := func(t *testing.T, l *Loop, lss uint64) {
		t.Helper()
		g, err := Probe(context.Background(), l.Path)
		if err != nil {
			t.Fatal(err)
		}
		if !g.Block || g.SizeBytes != 64<<20 || g.SectorSize != lss {
			t.Errorf("%s: geometry = %+v, want 64 MiB block device with %d-byte sectors", l.Path, g, lss)
		}
		for attr, want := range map[string]string{
			"loop/backing_file": l.File, "loop/partscan": "0", "loop/autoclear": "0", "ro": "0",
		} {
			if got := loopSysfs(l, attr); got != want {
				t.Errorf("%s: %s = %q, want %q", l.Path, attr, got, want)
			}
		}
	}
	for _, lss := range []uint64{512, 4096} {
		t.Run(fmt.Sprint(lss), func(t *testing.T) {
			check(t, attachForTest(t, 64<<20, lss), lss)
		})
	}
	t.Run("fallback-4096", func(t *testing.T) {
		// A kernel without LOOP_CONFIGURE (before 5.8) answers EINVAL.
		loopConfigure = func(int, *unix.LoopConfig) error { return unix.EINVAL }
		t.Cleanup(func() { loopConfigure = unix.IoctlLoopConfigure })
		check(t, attachForTest(t, 64<<20, 4096), 4096)
	})
	t.Run("detach", func(t *testing.T) {
		l := attachForTest(t, 64<<20, 512)
		ctx := context.Background()
		if err := l.Detach(ctx); err != nil {
			t.Fatal(err)
		}
		if got := loopSysfs(l, "loop/backing_file"); got == l.File {
			t.Errorf("%s still bound to %s after Detach", l.Path, got)
		}
		if err := l.Detach(ctx); err != nil {
			t.Errorf("second Detach: %v", err)
		}
	})
	t.Run("bad", func(t *testing.T) {
		if _, err := AttachLoop(context.Background(), sparseFile(t, 1<<20), 8192); err == nil || !strings.Contains(err.Error(), "sector size 8192") {
			t.Errorf("sector size 8192: %v", err)
		}
		if _, err := AttachLoop(context.Background(), t.TempDir(), 512); err == nil || !strings.Contains(err.Error(), "attaching") {
			t.Errorf("directory: %v", err)
		}
	})
}

// sgdiskParts reads the table sgdisk sees on dev, in bytes.
func sgdiskParts(t *testing.T, dev string, lss uint64) []Part {
	t.Helper()
	var parts []Part
	inTable := false
	for _, line := range strings.Split(run(t, "sgdisk", "-p", dev), "\n") {
		f := strings.Fields(line)
		if len(f) > 0 && f[0] == "Number" {
			inTable = true
			continue
		}
		if !inTable || len(f) < 3 {
			continue
		}
		n, err1 := strconv.Atoi(f[0])
		first, err2 := strconv.ParseUint(f[1], 10, 64)
		last, err3 := strconv.ParseUint(f[2], 10, 64)
		if err := errors.Join(err1, err2, err3); err != nil {
			t.Fatalf("parsing sgdisk -p line %q: %v", line, err)
		}
		parts = append(parts, Part{Number: n, Start: first * lss, Size: (last - first + 1) * lss})
	}
	return parts
}

// checkKernelView checks that sysfs and /dev show exactly parts for the loop device.
func checkKernelView(t *testing.T, l *Loop, parts []Part) {
	t.Helper()
	base := filepath.Base(l.Path)
	for _, p := range parts {
		node := PartitionPath(l.Path, p.Number)
		dir := filepath.Join("/sys/class/block", filepath.Base(node))
		start, err1 := readUint(filepath.Join(dir, "start"))
		size, err2 := readUint(filepath.Join(dir, "size"))
		if err := errors.Join(err1, err2); err != nil {
			t.Errorf("partition %d: %v", p.Number, err)
			continue
		}
		if start*512 != p.Start || size*512 != p.Size {
			t.Errorf("%s: sysfs start %d size %d bytes, want %d %d", node, start*512, size*512, p.Start, p.Size)
		}
		g, err := Probe(context.Background(), node)
		if err != nil || !g.Block || g.SizeBytes != p.Size {
			t.Errorf("%s: Probe = %+v, %v; want a block device of %d bytes", node, g, err, p.Size)
		}
	}
	for _, pat := range []string{"/sys/class/block/" + base + "p*", "/dev/" + base + "p*"} {
		m, _ := filepath.Glob(pat)
		if len(m) != len(parts) {
			t.Errorf("%s: %v, want %d partitions", pat, m, len(parts))
		}
	}
}

func TestLoopPartitions(t *testing.T) {
	requireLoop(t)
	requireTool(t, "sgdisk")
	mkfs := requireTool(t, "mkfs.ext4")
	for _, lss := range []uint64{512, 4096} {
		t.Run(fmt.Sprint(lss), func(t *testing.T) { testLoopPartitions(t, lss, mkfs) })
	}
}

func testLoopPartitions(t *testing.T, lss uint64, mkfs string) {
	ctx := context.Background()
	var sys Sys
	l := attachForTest(t, 128<<20, lss)
	base := filepath.Base(l.Path)

	// What the host kernel does with a plain BLKRRPART on our loop device.
	if f, err := os.Open(l.Path); err == nil {
		t.Logf("BLKRRPART on %s (partscan off): %v", l.Path, unix.IoctlSetInt(int(f.Fd()), unix.BLKRRPART, 0))
		f.Close()
	}

	// 1. A fresh GPT with three partitions.
	out := run(t, "sgdisk", "-Z", "-o", "-n1:0:+16M", "-n2:0:+8M", "-n3:0:+16M", l.Path)
	t.Logf("sgdisk: %s", strings.TrimSpace(out))
	parts := sgdiskParts(t, l.Path, lss)
	if len(parts) != 3 {
		t.Fatalf("sgdisk -p: %v", parts)
	}
	t0 := time.Now()
	if err := sys.Reread(ctx, l.Path, parts); err != nil {
		t.Fatal(err)
	}
	t.Logf("Reread (3 partitions added) took %v", time.Since(t0))
	checkKernelView(t, l, parts)

	// 2. Delete partition 2, grow partition 3 in place, add partition 4.
	start3 := parts[2].Start / lss
	run(t, "sgdisk", "-d2", "-d3", fmt.Sprintf("-n3:%d:+24M", start3), "-n4:0:+8M", l.Path)
	parts2 := sgdiskParts(t, l.Path, lss)
	if len(parts2) != 3 || parts2[1].Number != 3 || parts2[1].Size != 24<<20 || parts2[2].Number != 4 {
		t.Fatalf("sgdisk -p after the change: %v", parts2)
	}
	t0 = time.Now()
	if err := sys.Reread(ctx, l.Path, parts2); err != nil {
		t.Fatal(err)
	}
	t.Logf("Reread (1 deleted, 1 resized, 1 added) took %v", time.Since(t0))
	checkKernelView(t, l, parts2)
	for _, gone := range []string{PartitionPath(l.Path, 2), "/sys/class/block/" + base + "p2"} {
		if _, err := os.Lstat(gone); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s still exists after partition 2 was deleted (%v)", gone, err)
		}
	}
	// Rereading an unchanged table changes nothing and succeeds.
	if err := sys.Reread(ctx, l.Path, parts2); err != nil {
		t.Fatal(err)
	}

	// 3. Busy checks: free, then mounted.
	if err := sys.CheckNotBusy(ctx, l.Path); err != nil {
		t.Fatalf("CheckNotBusy on an unused loop: %v", err)
	}
	p1 := PartitionPath(l.Path, 1)
	run(t, mkfs, "-q", "-F", p1)
	mnt := t.TempDir()
	if err := unix.Mount(p1, mnt, "ext4", 0, ""); err != nil {
		t.Fatalf("mount %s on %s: %v", p1, mnt, err)
	}
	mounted := true
	unmount := func() {
		if !mounted {
			return
		}
		if err := unix.Unmount(mnt, 0); err != nil {
			t.Errorf("unmount %s: %v", mnt, err)
			unix.Unmount(mnt, unix.MNT_DETACH)
		}
		mounted = false
	}
	t.Cleanup(unmount)
	err := sys.CheckNotBusy(ctx, l.Path)
	var be *BusyError
	if !errors.As(err, &be) || !errors.Is(err, ErrBusy) || be.Dev != l.Path ||
		!reflect.DeepEqual(be.Reasons, []string{p1 + " is mounted at " + mnt}) {
		t.Errorf("CheckNotBusy with %s mounted = %v", p1, err)
	}
	// The kernel refuses to delete a mounted partition; the error says which one.
	err = sys.Reread(ctx, l.Path, parts2[1:])
	if err == nil || !errors.Is(err, unix.EBUSY) || !containsAll(err.Error(), l.Path, "partition 1", p1) {
		t.Errorf("Reread dropping the mounted partition = %v", err)
	}
	// Detach refuses too, and leaves the device attached for a later try.
	if err := l.Detach(ctx); err == nil || !containsAll(err.Error(), l.Path, p1) {
		t.Errorf("Detach with %s mounted = %v", p1, err)
	}
	if got := loopSysfs(l, "loop/backing_file"); got != l.File {
		t.Errorf("%s: backing file %q after a refused Detach, want %q", l.Path, got, l.File)
	}
	unmount()
	if err := sys.CheckNotBusy(ctx, l.Path); err != nil {
		t.Errorf("CheckNotBusy after unmount: %v", err)
	}

	// 4. Locking.
	lock, err := LockDevice(ctx, l.Path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lock.Release() })
	if _, err := LockDevice(ctx, l.Path); !errors.Is(err, ErrLocked) || !strings.Contains(err.Error(), l.Path) {
		t.Errorf("second LockDevice = %v", err)
	}
	// Another process (flock(1) from util-linux) is refused as well.
	if flock, err := exec.LookPath("flock"); err == nil {
		if out, err := exec.Command(flock, "-n", "-E", "75", l.Path, "true").CombinedOutput(); err == nil {
			t.Errorf("flock -n %s succeeded while locked: %s", l.Path, out)
		}
	}
	if err := lock.Release(); err != nil {
		t.Fatal(err)
	}
	lock2, err := LockDevice(ctx, l.Path)
	if err != nil {
		t.Fatalf("LockDevice after Release: %v", err)
	}
	lock2.Release()

	// 5. Detach removes the partitions and unbinds the file.
	if err := l.Detach(ctx); err != nil {
		t.Fatal(err)
	}
	for _, pat := range []string{"/dev/" + base + "p*", "/sys/class/block/" + base + "p*"} {
		if m, _ := filepath.Glob(pat); len(m) != 0 {
			t.Errorf("after Detach: %v still exist", m)
		}
	}
	if got := loopSysfs(l, "loop/backing_file"); got == l.File {
		t.Errorf("%s still bound to %s after Detach", l.Path, got)
	}
}

// TestRereadPartscanLoop covers a device whose BLKRRPART succeeds: a loop attached with
// partition scanning (losetup -P). On a kernel without partition-table parsers the rescan
// drops every partition and finds none, so Reread must add them back with BLKPG; on a kernel
// with parsers the rescan alone is enough and no BLKPG is needed.
func TestRereadPartscanLoop(t *testing.T) {
	requireLoop(t)
	requireTool(t, "sgdisk")
	losetup := requireTool(t, "losetup")
	img := sparseFile(t, 64<<20)
	run(t, "sgdisk", "-o", "-n1:0:+8M", "-n2:0:+8M", img)
	dev := strings.TrimSpace(run(t, losetup, "-f", "--show", "-P", img))
	t.Cleanup(func() {
		// With -P, detaching also drops the partitions.
		if out, err := exec.Command(losetup, "-d", dev).CombinedOutput(); err != nil {
			t.Errorf("losetup -d %s: %v: %s", dev, err, out)
		}
	})
	l := &Loop{Path: dev, File: img}
	if got := loopSysfs(l, "loop/partscan"); got != "1" {
		t.Fatalf("%s: partscan = %q", dev, got)
	}
	if f, err := os.Open(dev); err == nil {
		t.Logf("BLKRRPART on %s (partscan on): %v", dev, unix.IoctlSetInt(int(f.Fd()), unix.BLKRRPART, 0))
		f.Close()
	}
	m, _ := filepath.Glob("/sys/class/block/" + filepath.Base(dev) + "p*")
	t.Logf("partitions after attach -P and BLKRRPART: %v", m)
	parts := sgdiskParts(t, dev, 512)
	var sys Sys
	for i := 0; i < 2; i++ { // the second round starts from partitions Reread itself added
		if err := sys.Reread(context.Background(), dev, parts); err != nil {
			t.Fatal(err)
		}
		checkKernelView(t, l, parts)
	}
}

// TestRemovePartitionsWaitsOutABriefOpener: a partition that another process holds open
// for a moment (a scan of every block device) is deleted once it is closed; one held
// open for good fails with EBUSY after a bounded wait.
func TestRemovePartitionsWaitsOutABriefOpener(t *testing.T) {
	requireLoop(t)
	ctx := context.Background()
	var sys Sys
	l := attachForTest(t, 16<<20, 512)
	parts := []Part{{Number: 1, Start: 1 << 20, Size: 4 << 20}}
	if err := sys.Reread(ctx, l.Path, parts); err != nil {
		t.Fatal(err)
	}
	node := PartitionPath(l.Path, 1)

	f, err := os.Open(node)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	err = sys.RemovePartitions(ctx, l.Path)
	f.Close()
	if !errors.Is(err, unix.EBUSY) || time.Since(start) < busyWait {
		t.Fatalf("with the partition open throughout: %v after %v, want EBUSY after %v", err, time.Since(start), busyWait)
	}

	f, err = os.Open(node)
	if err != nil {
		t.Fatal(err)
	}
	timer := time.AfterFunc(300*time.Millisecond, func() { f.Close() })
	defer timer.Stop()
	if err := sys.RemovePartitions(ctx, l.Path); err != nil {
		t.Fatalf("with the partition open for 300ms: %v", err)
	}
	if _, err := os.Stat(filepath.Join("/sys/block", filepath.Base(l.Path), filepath.Base(node))); !os.IsNotExist(err) {
		t.Errorf("%s is still known to the kernel: %v", node, err)
	}
}
