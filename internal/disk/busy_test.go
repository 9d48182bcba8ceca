package disk

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"golang.org/x/sys/unix"
)

func TestCheckNotBusy(t *testing.T) {
	f := newFakeTree(t)
	f.disk("vda", "252:0", nil)
	f.part("vda", 1, "252:1")
	f.part("vda", 2, "252:2")
	f.part("vda", 3, "252:3")
	f.part("vda", 4, "252:4")
	f.disk("dm-0", "253:0", map[string]string{"dm/name": "vg-root\n"})
	f.disk("md127", "9:127", nil)
	f.symlink("../../dm-0", filepath.Join(f.sys.SysRoot, "devices", "vda", "holders", "dm-0"))
	f.symlink("../../../md127", filepath.Join(f.sys.SysRoot, "devices", "vda", "vda1", "holders", "md127"))
	f.disk("nvme0n1", "259:0", nil)
	f.part("nvme0n1", 1, "259:1")
	f.disk("vdb", "252:16", nil)
	f.part("vdb", 1, "252:17")
	f.disk("vdc", "252:32", nil)
	f.part("vdc", 1, "252:33")

	f.write(filepath.Join(f.sys.ProcRoot, "self", "mountinfo"), ""+
		"21 1 0:20 / / rw,relatime - overlay overlay rw\n"+
		"22 21 252:2 / /mnt/x rw,relatime shared:1 - ext4 /dev/vda2 rw\n"+
		"23 21 0:5 / /dev rw,nosuid master:2 - devtmpfs devtmpfs rw\n"+
		"24 21 252:2 /sub /mnt/with\\040space rw - ext4 /dev/vda2 rw\n"+
		"25 21 252:2 / /mnt/x rw - ext4 /dev/vda2 rw\n"+
		"26 21 259:1 / /boot rw - xfs /dev/nvme0n1p1 rw\n"+
		// btrfs shows an anonymous device number; the source names the partition.
		"27 21 0:45 / /srv rw - btrfs /dev/vdc1 rw\n")
	f.write(filepath.Join(f.sys.ProcRoot, "swaps"), ""+
		"Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n"+
		"/dev/vda3                               partition\t1048572\t\t0\t\t-2\n"+
		"/swapfile                               file\t\t1048572\t\t0\t\t-3\n")

	ctx := context.Background()
	err := f.sys.CheckNotBusy(ctx, f.dev("vda"))
	var be *BusyError
	if !errors.As(err, &be) || !errors.Is(err, ErrBusy) {
		t.Fatalf("CheckNotBusy(vda) = %v, want a *BusyError matching ErrBusy", err)
	}
	want := []string{
		f.dev("vda") + " is held by dm-0 (vg-root)",
		f.dev("vda1") + " is held by md127",
		f.dev("vda2") + " is mounted at /mnt/x",
		f.dev("vda2") + " is mounted at /mnt/with space",
		f.dev("vda3") + " is active swap",
	}
	if be.Dev != f.dev("vda") || !reflect.DeepEqual(be.Reasons, want) {
		t.Errorf("BusyError = %#v\nwant reasons %#v", be, want)
	}
	wantMsg := f.dev("vda") + " is busy: " + want[0] + "; " + want[1] + "; " + want[2] + "; " + want[3] + "; " + want[4]
	if err.Error() != wantMsg {
		t.Errorf("message:\n got %s\nwant %s", err, wantMsg)
	}

	for dev, reasons := range map[string][]string{
		"nvme0n1": {f.dev("nvme0n1p1") + " is mounted at /boot"},
		"vdc":     {f.dev("vdc1") + " is mounted at /srv"},
		"vdb":     nil,
	} {
		err := f.sys.CheckNotBusy(ctx, f.dev(dev))
		if reasons == nil {
			if err != nil {
				t.Errorf("CheckNotBusy(%s) = %v, want nil", dev, err)
			}
			continue
		}
		if !errors.As(err, &be) || !reflect.DeepEqual(be.Reasons, reasons) {
			t.Errorf("CheckNotBusy(%s) = %v, want reasons %q", dev, err, reasons)
		}
	}

	if err := f.sys.CheckNotBusy(ctx, f.dev("vdz")); !errors.Is(err, ErrNotFound) || errors.Is(err, ErrBusy) {
		t.Errorf("missing disk: %v", err)
	}
	os.Remove(filepath.Join(f.sys.ProcRoot, "self", "mountinfo"))
	if err := f.sys.CheckNotBusy(ctx, f.dev("vdb")); err == nil || errors.Is(err, ErrBusy) {
		t.Errorf("unreadable mountinfo must be an error, not busy and not free: %v", err)
	}
}

// TestCheckNotBusySwapByNumber checks that a swap area listed under another name (a
// /dev/mapper-style node) is matched by major:minor. It needs root to create the device
// node; the node is only stat'ed, never opened.
func TestCheckNotBusySwapByNumber(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to mknod a block device node (only stat'ed)")
	}
	f := newFakeTree(t)
	f.disk("vdq", "252:240", nil)
	f.part("vdq", 2, "252:242")
	node := filepath.Join(t.TempDir(), "swap-alias")
	if err := unix.Mknod(node, unix.S_IFBLK|0o600, int(unix.Mkdev(252, 242))); err != nil {
		t.Skipf("mknod: %v", err)
	}
	f.write(filepath.Join(f.sys.ProcRoot, "swaps"), "Filename\tType\tSize\tUsed\tPriority\n"+node+"\tpartition\t100\t0\t-2\n")
	err := f.sys.CheckNotBusy(context.Background(), f.dev("vdq"))
	var be *BusyError
	if !errors.As(err, &be) || !reflect.DeepEqual(be.Reasons, []string{f.dev("vdq2") + " is active swap"}) {
		t.Errorf("CheckNotBusy = %v", err)
	}
}

func TestUnescapeOctal(t *testing.T) {
	for in, want := range map[string]string{
		`/mnt/a\040b`:   "/mnt/a b",
		`/x\011y\012z`:  "/x\ty\nz",
		`/back\134hash`: `/back\hash`,
		`/trail\04`:     `/trail\04`,
		`/plain`:        "/plain",
	} {
		if got := unescapeOctal(in); got != want {
			t.Errorf("unescapeOctal(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestLockFile(t *testing.T) {
	// flock behaves the same on a regular file, so the lock semantics are checked on any
	// machine; the loop-device test repeats this on a block device.
	p := filepath.Join(t.TempDir(), "disk.img")
	if err := os.WriteFile(p, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	l, err := LockDevice(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Release() })
	if _, err := LockDevice(ctx, p); !errors.Is(err, ErrLocked) || !containsAll(err.Error(), p) {
		t.Errorf("second lock: %v", err)
	}
	if err := l.Release(); err != nil {
		t.Fatal(err)
	}
	if err := l.Release(); err != nil {
		t.Errorf("second Release: %v", err)
	}
	l2, err := LockDevice(ctx, p)
	if err != nil {
		t.Fatalf("lock after release: %v", err)
	}
	l2.Release()
	if _, err := LockDevice(ctx, p+".missing"); !errors.Is(err, ErrNotFound) {
		t.Errorf("missing device: %v", err)
	}
}
