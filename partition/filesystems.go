package partition

import "github.com/provisioner/provisioner/internal/disk"

// FSDevice pairs a planned filesystem with the device node it lives on.
type FSDevice struct {
	FS  *Filesystem
	Dev string
}

// FilesystemDevices lists every planned filesystem with its device node, in the order
// of Filesystems: partitions disk by disk, then md arrays, then logical volumes.
func FilesystemDevices(l *Layout, devs Devices) []FSDevice {
	var out []FSDevice
	for _, d := range l.Disks {
		for _, p := range d.Partitions {
			if p.FS != nil {
				out = append(out, FSDevice{p.FS, disk.PartitionPath(devs[d.ID.Value], p.Number)})
			}
		}
	}
	for _, r := range l.RAIDs {
		if r.FS != nil {
			out = append(out, FSDevice{r.FS, r.Device()})
		}
	}
	for _, vg := range l.VGs {
		for _, lv := range vg.LVs {
			if lv.FS != nil {
				out = append(out, FSDevice{lv.FS, "/dev/" + vg.Name + "/" + lv.Name})
			}
		}
	}
	return out
}
