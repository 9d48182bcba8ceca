package disk

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
)

func resolveTree(t *testing.T) *fakeTree {
	f := newFakeTree(t)
	f.disk("vda", "252:0", map[string]string{"serial": "SER-A\n"})
	f.part("vda", 1, "252:1")
	f.disk("sdb", "8:16", map[string]string{"device/serial": "  SER-B  \n", "device/wwid": "naa.5000c500a1b2c3d4\n"})
	f.disk("nvme0n1", "259:0", map[string]string{"device/serial": "NVME-1\n", "wwid": "eui.0025388b71b0a8c3\n"})
	f.disk("sdc", "8:32", map[string]string{"device/serial": "DUP\n"})
	f.disk("sdd", "8:48", map[string]string{"device/serial": "DUP\n"})
	f.disk("sde", "8:64", nil)
	// A partition listed next to the disks with a serial of its own must never match.
	pdir := filepath.Join(f.sys.SysRoot, "devices", "sde", "sde1")
	f.write(filepath.Join(pdir, "partition"), "1\n")
	f.write(filepath.Join(pdir, "serial"), "PART-SER\n")
	f.write(filepath.Join(pdir, "wwid"), "naa.600000000000000a\n")
	f.symlink(filepath.Join("..", "..", "devices", "sde", "sde1"), filepath.Join(f.sys.SysRoot, "class", "block", "sde1"))
	f.symlink(filepath.Join("..", "devices", "sde", "sde1"), filepath.Join(f.sys.SysRoot, "block", "sde1"))
	f.write(f.dev("sde1"), "")

	f.symlink("../../vda", filepath.Join(f.sys.DevRoot, "disk", "by-path", "pci-0000:00:05.0"))
	f.symlink("../../vda1", filepath.Join(f.sys.DevRoot, "disk", "by-path", "pci-0000:00:05.0-part1"))
	f.symlink("../../sdb", filepath.Join(f.sys.DevRoot, "disk", "by-id", "wwn-0x5000c500a1b2c3d4"))
	f.symlink("../../../devices/sdb", filepath.Join(f.sys.SysRoot, "class", "scsi_disk", "0:0:1:0", "device", "block", "sdb"))
	f.mkdir(filepath.Join(f.sys.SysRoot, "class", "scsi_disk", "0:0:2:0", "device", "block"))
	return f
}

func TestResolve(t *testing.T) {
	f := resolveTree(t)
	ctx := context.Background()
	for _, tc := range []struct{ typ, value, want string }{
		{"name", "vda", "vda"},
		{"name", "/dev/vda", "vda"},
		{"name", " nvme0n1 ", "nvme0n1"},
		{"path", "disk/by-path/pci-0000:00:05.0", "vda"},
		{"path", "/dev/disk/by-path/pci-0000:00:05.0", "vda"},
		{"path", f.dev("disk/by-id/wwn-0x5000c500a1b2c3d4"), "sdb"},
		{"by-id", "wwn-0x5000c500a1b2c3d4", "sdb"},
		{"by-id", "/dev/disk/by-id/wwn-0x5000c500a1b2c3d4", "sdb"},
		{"scsi", "0:0:1:0", "sdb"},
		{"serial", "SER-A", "vda"},
		{"serial", "SER-B", "sdb"},
		{"serial", " NVME-1 ", "nvme0n1"},
		{"wwn", "0x5000c500a1b2c3d4", "sdb"},
		{"wwn", "0x5000C500A1B2C3D4", "sdb"},
		{"wwn", "naa.5000c500a1b2c3d4", "sdb"},
		{"wwn", "5000c500a1b2c3d4", "sdb"},
		{"wwn", "eui.0025388b71b0a8c3", "nvme0n1"},
		{"wwn", "0x0025388b71b0a8c3", "nvme0n1"},
	} {
		got, err := f.sys.Resolve(ctx, tc.typ, tc.value)
		if err != nil {
			t.Errorf("Resolve(%s, %q): %v", tc.typ, tc.value, err)
			continue
		}
		if want := f.dev(tc.want); got != want {
			t.Errorf("Resolve(%s, %q) = %s, want %s", tc.typ, tc.value, got, want)
		}
	}
}

func TestResolveErrors(t *testing.T) {
	f := resolveTree(t)
	ctx := context.Background()
	for _, tc := range []struct {
		typ, value string
		notFound   bool
		contains   []string
	}{
		{"name", "vdz", true, []string{`disk id name "vdz"`, f.dev("vdz"), "does not exist"}},
		{"name", "vda1", true, []string{"vda1 is a partition, not a whole disk"}},
		{"name", "../etc", false, []string{"not a device name"}},
		{"name", "", false, []string{"empty value"}},
		{"path", "disk/by-path/pci-0000:00:05.0-part1", true, []string{"vda1 is a partition"}},
		{"path", "/dev/disk/by-path/nope", true, []string{f.dev("disk/by-path/nope"), "does not exist"}},
		{"by-id", "wwn-0xdeadbeef", true, []string{f.dev("disk/by-id/wwn-0xdeadbeef"), "does not exist"}},
		{"by-id", "a/../../vda", false, []string{"not a name under /dev/disk/by-id"}},
		{"scsi", "0:0:9:0", true, []string{"no disk at that SCSI address", "0:0:9:0/device/block"}},
		{"scsi", "0:0:2:0", true, []string{"missing or empty"}},
		{"scsi", "0:0:1", false, []string{"not a SCSI address"}},
		{"scsi", "a:b:c:d", false, []string{"not a SCSI address"}},
		{"serial", "NOPE", true, []string{`disk id serial "NOPE"`, "no whole disk", "device/serial and serial", "vda: SER-A", "sdb: SER-B", "sde: none"}},
		{"serial", "PART-SER", true, []string{"no whole disk"}},
		{"serial", "DUP", false, []string{"several disks (sdc, sdd)"}},
		{"wwn", "0x600000000000000a", true, []string{"no whole disk", "wwid and device/wwid", "sdb: naa.5000c500a1b2c3d4"}},
		{"label", "x", false, []string{"unknown id type"}},
	} {
		got, err := f.sys.Resolve(ctx, tc.typ, tc.value)
		if err == nil {
			t.Errorf("Resolve(%s, %q) = %s, want an error", tc.typ, tc.value, got)
			continue
		}
		if errors.Is(err, ErrNotFound) != tc.notFound {
			t.Errorf("Resolve(%s, %q): errors.Is(ErrNotFound) = %v, want %v: %v", tc.typ, tc.value, !tc.notFound, tc.notFound, err)
		}
		for _, c := range tc.contains {
			if !strings.Contains(err.Error(), c) {
				t.Errorf("Resolve(%s, %q): error %q does not contain %q", tc.typ, tc.value, err, c)
			}
		}
	}
}

func TestResolveNoUdev(t *testing.T) {
	f := newFakeTree(t)
	f.disk("vda", "252:0", nil)
	_, err := f.sys.Resolve(context.Background(), "by-id", "virtio-XYZ")
	if !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "only udev creates it") {
		t.Errorf("by-id without /dev/disk/by-id: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := f.sys.Resolve(ctx, "name", "vda"); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled context: %v", err)
	}
}
