package disk

import (
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// MountPoint is one line of the mount table.
type MountPoint struct {
	// DevNum is the mounted device's "major:minor".
	DevNum string
	// Point is where it is mounted.
	Point string
	// Source is the mount source as the kernel recorded it ("/dev/sda2", or "/dev/root").
	Source string
}

// Mounts lists this process's mounts, in mount order.
func (s Sys) Mounts() ([]MountPoint, error) {
	entries, err := readMountinfo(filepath.Join(s.procRoot(), "self", "mountinfo"))
	if err != nil {
		return nil, fmt.Errorf("listing mounts: %w", err)
	}
	out := make([]MountPoint, len(entries))
	for i, e := range entries {
		out[i] = MountPoint{DevNum: e.dev, Point: e.point, Source: e.source}
	}
	return out, nil
}

// MountedAt returns where the block device dev is mounted ("" when it is not), matching
// the device's number, not its name: the mount table may name it /dev/root or by a
// symlink.
func (s Sys) MountedAt(dev string) (string, error) {
	var st unix.Stat_t
	if err := unix.Stat(dev, &st); err != nil {
		return "", fmt.Errorf("checking whether %s is mounted: %w", dev, err)
	}
	num := fmt.Sprintf("%d:%d", unix.Major(uint64(st.Rdev)), unix.Minor(uint64(st.Rdev)))
	mounts, err := s.Mounts()
	if err != nil {
		return "", err
	}
	for _, m := range mounts {
		if m.DevNum == num {
			return m.Point, nil
		}
	}
	return "", nil
}

// DevNode returns the /dev node of the block device numbered "major:minor", from sysfs
// (the mount table's source can be "/dev/root" or a name from another namespace).
func (s Sys) DevNode(devNum string) (string, error) {
	uevent, err := readTrim(filepath.Join(s.sysRoot(), "dev", "block", devNum, "uevent"))
	if err != nil {
		return "", fmt.Errorf("block device %s: %w", devNum, err)
	}
	for _, line := range strings.Split(uevent, "\n") {
		if name, ok := strings.CutPrefix(line, "DEVNAME="); ok {
			return filepath.Join(s.devRoot(), name), nil
		}
	}
	return "", fmt.Errorf("block device %s: no DEVNAME in sysfs", devNum)
}

// PartitionsNamed returns the /dev nodes of the partitions whose GPT partition name is
// name, from sysfs (the kernel puts PARTNAME in each partition's uevent): no blkid and no
// udev needed, so it works in a minimal system.
func (s Sys) PartitionsNamed(name string) ([]string, error) {
	ents, err := os.ReadDir(filepath.Join(s.sysRoot(), "class", "block"))
	if err != nil {
		return nil, fmt.Errorf("listing block devices: %w", err)
	}
	var out []string
	for _, e := range ents {
		if !s.isPartition(e.Name()) {
			continue
		}
		uevent, err := readTrim(filepath.Join(s.classBlock(e.Name()), "uevent"))
		if err != nil {
			continue
		}
		for _, line := range strings.Split(uevent, "\n") {
			if v, ok := strings.CutPrefix(line, "PARTNAME="); ok && v == name {
				out = append(out, s.node(e.Name()))
			}
		}
	}
	return out, nil
}

// SniffFS names the filesystem on dev from its superblock magic ("ext4" for ext2/3/4,
// whose driver mounts all three; "xfs"), "" when it is neither: enough to mount a boot
// filesystem where blkid is not installed.
func SniffFS(dev string) string {
	f, err := os.Open(dev)
	if err != nil {
		return ""
	}
	defer f.Close()
	buf := make([]byte, 2048)
	if n, _ := f.ReadAt(buf, 0); n < len(buf) {
		return ""
	}
	switch {
	case string(buf[:4]) == "XFSB":
		return "xfs"
	case buf[1080] == 0x53 && buf[1081] == 0xEF:
		return "ext4"
	}
	return ""
}

// CmdlineRootUUID returns the UUID of root=UUID=... on the running kernel's command
// line, "" when there is none.
func (s Sys) CmdlineRootUUID() string {
	b, err := os.ReadFile(filepath.Join(s.procRoot(), "cmdline"))
	if err != nil {
		return ""
	}
	for _, w := range strings.Fields(string(b)) {
		if v, ok := strings.CutPrefix(w, "root=UUID="); ok {
			return v
		}
	}
	return ""
}

// NeedsJournalRecovery reports whether dev holds an ext3/ext4 filesystem whose journal
// must be replayed before it can be mounted (the superblock's needs_recovery feature, set
// while it is mounted and left set by a crash). The kernel replays it even for a
// read-only mount, which fails on a read-only device.
func NeedsJournalRecovery(dev string) bool {
	f, err := os.Open(dev)
	if err != nil {
		return false
	}
	defer f.Close()
	buf := make([]byte, 2048)
	if n, _ := f.ReadAt(buf, 0); n < len(buf) || buf[1080] != 0x53 || buf[1081] != 0xEF {
		return false
	}
	const incompatRecover = 0x0004
	return binary.LittleEndian.Uint32(buf[1024+0x60:])&incompatRecover != 0
}

// ReadOnlyDevice reports whether the block device dev refuses writes (BLKROGET), as a
// loop device attached read-only does.
func ReadOnlyDevice(dev string) bool {
	f, err := os.Open(dev)
	if err != nil {
		return false
	}
	defer f.Close()
	ro, err := unix.IoctlGetInt(int(f.Fd()), unix.BLKROGET)
	return err == nil && ro != 0
}
