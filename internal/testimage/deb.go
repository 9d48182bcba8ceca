package testimage

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"

	"github.com/provisioner/provisioner/internal/deb"
)

// The packages are read with internal/deb (pure Go, no dpkg): only the kernel, the
// stage-1 modules and busybox are kept.

// stage1Modules are the modules the stage-1 initramfs loads, in this order (each needs
// the ones before it), so that /dev/vda exists (the Debian 12 cloud kernel builds them as modules).
var stage1Modules = []string{
	"virtio_ring.ko", "virtio.ko", "virtio_pci_modern_dev.ko",
	"virtio_pci_legacy_dev.ko", "virtio_pci.ko", "virtio_blk.ko",
}

// storageModules are loaded after stage1Modules by a storage image's stage 1 (Options.
// Storage), whose root may be a logical volume or an md raid1 array: device-mapper (its
// linear target is built in) and md with its raid1 personality, which needs md-mod.
var storageModules = []string{"dm-mod.ko", "md-mod.ko", "raid1.ko"}

// netModules are loaded after stage1Modules by every image's stage 1, so that a VM
// given a virtio NIC has eth0 once booted: virtio_net needs net_failover, which needs
// failover (their depends= fields say so), and virtio and virtio_ring of stage1Modules.
var netModules = []string{"failover.ko", "net_failover.ko", "virtio_net.ko"}

// kernelFiles is what extractKernel keeps from a linux-image package.
type kernelFiles struct {
	Vmlinuz        string   // path of the written kernel image
	Modules        []string // paths of the written modules, in stage1Modules order
	StorageModules []string // paths of the written modules, in storageModules order
	NetModules     []string // paths of the written modules, in netModules order
}

// extractKernel reads the linux-image .deb at debPath and writes boot/vmlinuz-<ver> to
// dir/vmlinuz and the stage-1, network and storage modules found under
// [usr/]lib/modules/<ver>/kernel to dir/modules/. A module that is absent must be listed in the package's modules.builtin
// (when it ships one): otherwise the kernel could not reach its root disk, and a boot
// that waits 10 s for /dev/vda is a far more confusing failure than this error.
func extractKernel(ctx context.Context, debPath, ver, dir string) (kernelFiles, error) {
	x := newKernelExtraction(ver, dir)
	if err := os.MkdirAll(x.modDir, 0o755); err != nil {
		return x.kf, fmt.Errorf("testimage: %w", err)
	}
	err := deb.Walk(ctx, debPath, x.visit)
	if err != nil {
		return x.kf, err
	}
	if x.kf.Vmlinuz == "" {
		return x.kf, fmt.Errorf("testimage: %s has no boot/vmlinuz-%s", debPath, ver)
	}
	if x.kf.Modules, err = x.pick(debPath, stage1Modules); err != nil {
		return x.kf, err
	}
	if x.kf.NetModules, err = x.pick(debPath, netModules); err != nil {
		return x.kf, err
	}
	x.kf.StorageModules, err = x.pick(debPath, storageModules)
	return x.kf, err
}

// kernelExtraction is extractKernel's progress through the package.
type kernelExtraction struct {
	kf         kernelFiles
	dir        string            // where the kernel goes
	modDir     string            // where the modules go
	modRoot    string            // "lib/modules/<ver>/", the package's module tree
	vmlinuz    string            // the kernel image's name in the package
	wanted     map[string]bool   // base names of the modules to keep
	found      map[string]string // base name -> path of each module written
	builtin    []byte            // the package's modules.builtin
	sawBuiltin bool              // whether it ships one
}

// newKernelExtraction starts the extraction of kernel version ver into dir.
func newKernelExtraction(ver, dir string) *kernelExtraction {
	x := &kernelExtraction{
		dir:     dir,
		modDir:  filepath.Join(dir, kitModules),
		modRoot: "lib/modules/" + ver + "/",
		vmlinuz: "boot/vmlinuz-" + ver,
		wanted:  map[string]bool{},
		found:   map[string]string{},
	}
	for _, m := range slices.Concat(stage1Modules, netModules, storageModules) {
		x.wanted[m] = true
	}
	return x
}

// visit handles one entry of the package (deb.Walk's callback).
func (x *kernelExtraction) visit(name string, hdr *tar.Header, tr io.Reader) error {
	// Merged-/usr packages (Debian 13 on) put the modules under usr/lib/modules.
	name = strings.TrimPrefix(name, "usr/")
	switch {
	case name == x.vmlinuz && hdr.Typeflag == tar.TypeReg:
		x.kf.Vmlinuz = filepath.Join(x.dir, kitVmlinuz)
		if err := deb.WriteFile(x.kf.Vmlinuz, tr, 0o644); err != nil {
			return err
		}
		return x.stopWhenAll()
	case name == x.modRoot+"modules.builtin" && hdr.Typeflag == tar.TypeReg:
		b, err := io.ReadAll(tr)
		x.builtin, x.sawBuiltin = b, true
		return err
	case !strings.HasPrefix(name, x.modRoot+"kernel/"):
		return nil
	}
	base := path.Base(name)
	if x.wanted[base] && hdr.Typeflag == tar.TypeReg {
		dst := filepath.Join(x.modDir, base)
		x.found[base] = dst
		if err := deb.WriteFile(dst, tr, 0o644); err != nil {
			return err
		}
		return x.stopWhenAll()
	}
	for _, ext := range []string{".xz", ".zst", ".gz"} {
		if x.wanted[strings.TrimSuffix(base, ext)] && strings.HasSuffix(base, ext) {
			return fmt.Errorf("module %s is compressed (%s); the stage-1 "+
				"insmod needs plain .ko files as Debian 12 ships them", name, ext)
		}
	}
	return nil
}

// stopWhenAll ends the walk once the kernel and every module are out: the rest
// (modules.builtin included, which matters only for a missing module) need not be
// decompressed.
func (x *kernelExtraction) stopWhenAll() error {
	if x.kf.Vmlinuz != "" && len(x.found) == len(x.wanted) {
		return deb.ErrStop
	}
	return nil
}

// pick returns the paths of the written modules among mods, in mods' order. A module
// not written must be built in, when the package of debPath says what is.
func (x *kernelExtraction) pick(debPath string, mods []string) ([]string, error) {
	var out []string
	for _, m := range mods {
		if p, ok := x.found[m]; ok {
			out = append(out, p)
			continue
		}
		if x.sawBuiltin && !listsBuiltin(x.builtin, m) {
			return nil, fmt.Errorf("testimage: %s: %s is neither a module under %skernel nor built in", debPath, m, x.modRoot)
		}
	}
	return out, nil
}

// listsBuiltin reports whether modules.builtin (lines like
// "kernel/drivers/virtio/virtio.ko") names the module with base name mod.
func listsBuiltin(builtin []byte, mod string) bool {
	for _, line := range bytes.Split(builtin, []byte("\n")) {
		if path.Base(string(bytes.TrimSpace(line))) == mod {
			return true
		}
	}
	return false
}

// extractBusybox writes bin/busybox of the busybox-static .deb at debPath to dst.
func extractBusybox(ctx context.Context, debPath, dst string) error {
	return deb.ExtractFile(ctx, debPath, "bin/busybox", dst, 0o755)
}
