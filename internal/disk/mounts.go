package disk

import (
	"fmt"
	"path/filepath"
	"strings"
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
