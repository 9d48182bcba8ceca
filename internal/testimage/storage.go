package testimage

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/provisioner/provisioner/internal/elfdeps"
)

// storageTool is a host program a storage image's stage 1 runs, with its Debian package
// for the error that names what to install.
type storageTool struct{ name, pkg string }

// storageTools go into /bin of a storage initramfs. They come from the build host, which
// has them anyway (the deploy ramdisk is built from the same host tools): Debian has no
// static builds of either, and fetching their packages with every library's package
// would mean resolving dependencies the way apt does.
var storageTools = []storageTool{{"mdadm", "mdadm"}, {"lvm", "lvm2"}}

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
// which also loads the device-mapper and md raid1 modules and carries the host's mdadm
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
	p, err := cachedInitrd(k, "initrd-storage", slices.Concat(k.Modules, k.StorageModules), extra)
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
	var progs, missing []string
	for _, t := range storageTools {
		p := elfdeps.FindProgram(t.name, dirs)
		if p == "" {
			missing = append(missing, fmt.Sprintf("%s (package %s)", t.name, t.pkg))
			continue
		}
		progs = append(progs, p)
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("testimage: storage initramfs: not found in %s: %s", strings.Join(dirs, ":"), strings.Join(missing, ", "))
	}
	files := map[string]File{"etc/lvm/lvm.conf": {Data: []byte(stage1LVMConf), Mode: 0o644}}
	r := &elfdeps.Resolver{Dirs: libDirs}
	for _, p := range progs {
		data, err := os.ReadFile(p)
		if err != nil {
			return nil, fmt.Errorf("testimage: storage initramfs: %w", err)
		}
		files["bin/"+filepath.Base(p)] = File{Data: data, Mode: 0o755}
		libs, err := r.Needs(p)
		if err != nil {
			return nil, fmt.Errorf("testimage: storage initramfs: %w", err)
		}
		for _, l := range libs {
			name := strings.TrimPrefix(filepath.Clean(l), "/")
			if _, done := files[name]; done {
				continue
			}
			// A library found through a symlink (libudev.so.1 -> libudev.so.1.7.5) is
			// stored under the name the loader asks for, with the target's bytes.
			data, err := os.ReadFile(l)
			if err != nil {
				return nil, fmt.Errorf("testimage: storage initramfs: %s needs %w", p, err)
			}
			files[name] = File{Data: data, Mode: 0o755}
		}
	}
	return files, nil
}
