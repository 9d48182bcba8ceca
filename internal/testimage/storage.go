package testimage

import (
	"context"
	"fmt"
	"slices"

	"github.com/provisioner/provisioner/internal/elfdeps"
)

// storageTools go into /bin of a storage initramfs. They come from the build host, which
// has them anyway (the deploy ramdisk is built from the same host tools): Debian has no
// static builds of either, and fetching their packages with every library's package
// would mean resolving dependencies the way apt does.
var storageTools = []hostTool{{"mdadm", "mdadm"}, {"lvm", "lvm2"}}

// storageToolDirs are searched, in order, for storageTools; a variable so tests can
// point it elsewhere.
var storageToolDirs = elfdeps.ToolDirs

// libDirs is the library search path for the tools' dependencies; a variable so tests
// can point it elsewhere.
var libDirs = elfdeps.DefaultLibDirs

// stage1LVMConf makes lvm in stage 1 create the device nodes itself: no udev runs there
// (the deploy ramdisk's lvm.conf says the same, for the same reason).
const stage1LVMConf = `# Written by the provisioner's test images: stage 1 runs no udev.
activation {
	udev_sync = 0
	udev_rules = 0
	monitoring = 0
}
devices {
	obtain_device_list_from_udev = 0
}
`

// PrepareStorage sets k.StorageInitrd: the stage-1 initramfs of Options.Storage images,
// which also loads the device-mapper and md raid1 modules (after the virtio block and
// network ones) and carries the host's mdadm
// and lvm with their loader and libraries, so an image can boot with its root on a
// logical volume or an md raid1 array. It is cached next to the kit under a name that
// hashes the tools' bytes, so a host upgrade builds a new one. A missing tool is an
// error naming its package.
func (k *Kit) PrepareStorage(ctx context.Context) error {
	if k == nil || k.Vmlinuz == "" || k.Busybox == "" {
		return fmt.Errorf("testimage: storage initramfs: incomplete Kit (use Prepare)")
	}
	extra, err := storageFiles(storageToolDirs)
	if err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("testimage: storage initramfs: %w", err)
	}
	p, err := cachedInitrd(k, "initrd-storage", slices.Concat(k.Modules, k.NetModules, k.StorageModules), extra)
	if err != nil {
		return err
	}
	k.StorageInitrd = p
	return nil
}

// storageFiles reads the storage tools found in dirs, the files they need to start and
// the lvm configuration, by archive path. Each library keeps the path it was found at,
// in a directory the loader searches by default, so the initramfs needs no ld.so.cache.
func storageFiles(dirs []string) (map[string]File, error) {
	files, err := hostToolFiles(storageTools, dirs, "bin")
	if err != nil {
		return nil, fmt.Errorf("testimage: storage initramfs: %w", err)
	}
	files["etc/lvm/lvm.conf"] = File{Data: []byte(stage1LVMConf), Mode: 0o644}
	return files, nil
}
