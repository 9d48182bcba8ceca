package disk

import (
	"runtime"
	"strings"
	"testing"
	"unsafe"
)

func containsAll(s string, subs ...string) bool {
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			return false
		}
	}
	return true
}

func TestPartitionPath(t *testing.T) {
	for _, tc := range []struct {
		dev  string
		n    int
		want string
	}{
		{"/dev/vda", 3, "/dev/vda3"},
		{"/dev/sda", 12, "/dev/sda12"},
		{"/dev/nvme0n1", 3, "/dev/nvme0n1p3"},
		{"/dev/loop4", 3, "/dev/loop4p3"},
		{"/dev/loop12", 1, "/dev/loop12p1"},
		{"/dev/mmcblk0", 1, "/dev/mmcblk0p1"},
		{"/dev/md127", 2, "/dev/md127p2"},
		{"/dev/xvda", 1, "/dev/xvda1"},
		{"vda", 1, "vda1"},
	} {
		if got := PartitionPath(tc.dev, tc.n); got != tc.want {
			t.Errorf("PartitionPath(%q, %d) = %q, want %q", tc.dev, tc.n, got, tc.want)
		}
	}
}

func TestCheckParts(t *testing.T) {
	const M = 1 << 20
	good := []Part{{1, 1 * M, 1 * M}, {3, 10 * M, 5 * M}, {2, 2 * M, 8 * M}}
	if want, err := checkParts(good, 4096); err != nil || len(want) != 3 || want[3].Start != 10*M {
		t.Errorf("checkParts(good) = %v, %v", want, err)
	}
	if want, err := checkParts(nil, 512); err != nil || len(want) != 0 {
		t.Errorf("checkParts(nil) = %v, %v", want, err)
	}
	for _, tc := range []struct {
		parts []Part
		lss   uint64
		msg   string
	}{
		{[]Part{{0, M, M}}, 512, "partition number 0"},
		{[]Part{{1, M, 0}}, 512, "partition 1: size 0"},
		{[]Part{{1, M + 512, M}}, 4096, "not a multiple of the 4096-byte"},
		{[]Part{{1, M, M + 100}}, 512, "not a multiple of the 512-byte"},
		{[]Part{{1, M, M}, {1, 4 * M, M}}, 512, "partition 1 given twice"},
		{[]Part{{1, M, 2 * M}, {2, 2 * M, M}}, 512, "partitions 1 and 2 overlap"},
		{[]Part{{1, 1 << 63, 1 << 63}}, 512, "overflows"},
	} {
		if _, err := checkParts(tc.parts, tc.lss); err == nil || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("checkParts(%v, %d) = %v, want %q", tc.parts, tc.lss, err, tc.msg)
		}
	}
}

// TestBlkpgABI pins the struct sizes of include/uapi/linux/blkpg.h on 64-bit Linux, where a
// layout mistake would make the kernel read garbage.
func TestBlkpgABI(t *testing.T) {
	if unsafe.Sizeof(uintptr(0)) != 8 {
		t.Skipf("sizes pinned for 64-bit only (GOARCH %s)", runtime.GOARCH)
	}
	if got := unsafe.Sizeof(blkpgPartition{}); got != 152 {
		t.Errorf("sizeof(struct blkpg_partition) = %d, want 152", got)
	}
	if got := unsafe.Sizeof(blkpgIoctlArg{}); got != 24 {
		t.Errorf("sizeof(struct blkpg_ioctl_arg) = %d, want 24", got)
	}
	if got := unsafe.Offsetof(blkpgIoctlArg{}.Data); got != 16 {
		t.Errorf("offsetof(data) = %d, want 16", got)
	}
	if got := unsafe.Offsetof(blkpgPartition{}.Devname); got != 20 {
		t.Errorf("offsetof(devname) = %d, want 20", got)
	}
}
