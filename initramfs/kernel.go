package initramfs

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/provisioner/provisioner/internal/deb"
	"github.com/provisioner/provisioner/internal/run"
)

// flavour is one Debian 12 kernel flavour the ramdisk can be built with.
type flavour struct {
	meta string // the metapackage whose dependency names the current ABI package
	// hardware says the flavour drives physical machines: its SATA and NIC drivers are
	// required modules. The cloud flavour has none of them (it targets VMs).
	hardware bool
}

// flavours are the kernels Options.Flavour may name. amd64 boots real machines;
// cloud-amd64 boots 2× faster in QEMU TCG (its image is LZ4-compressed, the generic one XZ).
var flavours = map[string]flavour{
	"amd64":       {meta: "linux-image-amd64", hardware: true},
	"cloud-amd64": {meta: "linux-image-cloud-amd64"},
}

// kernel is an unpacked kernel package in the cache.
type kernel struct {
	Version string // e.g. "6.1.0-56-cloud-amd64"
	Dir     string // the cache directory
	Vmlinuz string
	Config  string // boot/config-<version>
	Root    string // a root with lib/modules/<version>, the complete module tree and its modules.dep
}

// Names inside a kernel directory of the cache (cacheDir/kernel-<version>/).
const (
	kernelPrefix   = "kernel-"
	kernelComplete = "complete" // written last; holds the version
)

// modDir returns the kernel's module directory.
func (k *kernel) modDir() string {
	return filepath.Join(k.Root, "lib", "modules", k.Version)
}

// loadKernel checks that dir is a complete unpacked kernel of ver and describes it.
func loadKernel(dir, ver string) (*kernel, error) {
	done, err := os.ReadFile(filepath.Join(dir, kernelComplete))
	if err != nil {
		return nil, err
	}
	if strings.TrimSpace(string(done)) != ver {
		return nil, fmt.Errorf("initramfs: %s: completion marker names %q, not %q", dir, strings.TrimSpace(string(done)), ver)
	}
	k := &kernel{Version: ver, Dir: dir, Vmlinuz: filepath.Join(dir, "vmlinuz"), Config: filepath.Join(dir, "config"),
		Root: filepath.Join(dir, "root")}
	for _, p := range []string{k.Vmlinuz, k.Config, filepath.Join(k.modDir(), "modules.dep")} {
		if _, err := os.Stat(p); err != nil {
			return nil, err
		}
	}
	return k, nil
}

// prepareKernel returns the unpacked kernel of the flavour: the version apt names now,
// from the cache when it was unpacked before, else downloaded (apt-get download, never
// installed) and unpacked. When apt cannot answer (offline, no package lists) the
// newest cached kernel of the flavour is used, with a warning.
func prepareKernel(ctx context.Context, a *deb.Apt, r run.Runner, name string, fl flavour, log *slog.Logger) (*kernel, error) {
	pkg, err := a.Depends(ctx, fl.meta, "linux-image-")
	if errors.Is(err, deb.ErrUnavailable) {
		if k := newestCachedKernel(a.Dir, name); k != nil {
			log.Warn("apt cannot name the current kernel; using the cached one", "kernel", k.Version, "err", err)
			return k, nil
		}
	}
	if err != nil {
		return nil, err
	}
	ver := strings.TrimPrefix(pkg, "linux-image-")
	if !strings.HasSuffix(ver, "-"+name) {
		return nil, fmt.Errorf("initramfs: %s depends on %s, not on a %s kernel", fl.meta, pkg, name)
	}
	dir := filepath.Join(a.Dir, kernelPrefix+ver)
	if k, err := loadKernel(dir, ver); err == nil {
		return k, nil
	}
	debs, err := a.Fetch(ctx, pkg)
	if err != nil {
		return nil, err
	}
	log.Info("unpacking the kernel package (once per version)", "package", filepath.Base(debs[0]))
	return unpackKernel(ctx, r, debs[0], ver, dir)
}

// newestCachedKernel returns the complete cached kernel of the flavour with the highest
// version, or nil.
func newestCachedKernel(cacheDir, name string) *kernel {
	dirs, _ := filepath.Glob(filepath.Join(cacheDir, kernelPrefix+"*-"+name)) // only a bad pattern fails
	var best *kernel
	for _, d := range dirs {
		ver := strings.TrimPrefix(filepath.Base(d), kernelPrefix)
		// "*-amd64" also matches the cloud flavour's "-cloud-amd64".
		if name == "amd64" && strings.HasSuffix(ver, "-cloud-amd64") {
			continue
		}
		k, err := loadKernel(d, ver)
		if err != nil {
			continue
		}
		if best == nil || deb.VersionLess(best.Version, k.Version) {
			best = k
		}
	}
	return best
}

// unpackKernel writes the kernel image, its config and the whole module tree of the
// package at debPath into a temporary directory next to dir, runs depmod on the tree
// (the package ships no modules.dep), and renames the directory to dir. A rename is
// atomic: a kernel directory is complete or absent, and of two racing builds one wins
// and the other uses the winner's.
func unpackKernel(ctx context.Context, r run.Runner, debPath, ver, dir string) (*kernel, error) {
	tmp, err := os.MkdirTemp(filepath.Dir(dir), "."+filepath.Base(dir)+".tmp-")
	if err != nil {
		return nil, fmt.Errorf("initramfs: cache: %w", err)
	}
	defer os.RemoveAll(tmp) // a no-op once renamed
	if err := os.Chmod(tmp, 0o755); err != nil {
		return nil, fmt.Errorf("initramfs: cache: %w", err)
	}
	modRoot := "lib/modules/" + ver + "/"
	root := filepath.Join(tmp, "root")
	var sawKernel, sawConfig bool
	err = deb.Walk(ctx, debPath, func(name string, hdr *tar.Header, tr io.Reader) error {
		// Merged-/usr packages (Debian 13 on) put the modules under usr/lib/modules.
		name = strings.TrimPrefix(name, "usr/")
		switch {
		case name == "boot/vmlinuz-"+ver && hdr.Typeflag == tar.TypeReg:
			sawKernel = true
			return deb.WriteFile(filepath.Join(tmp, "vmlinuz"), tr, 0o644)
		case name == "boot/config-"+ver && hdr.Typeflag == tar.TypeReg:
			sawConfig = true
			return deb.WriteFile(filepath.Join(tmp, "config"), tr, 0o644)
		case !strings.HasPrefix(name, modRoot):
			return nil
		}
		dst := filepath.Join(root, filepath.FromSlash(name))
		switch hdr.Typeflag {
		case tar.TypeDir:
			return os.MkdirAll(dst, 0o755)
		case tar.TypeReg:
			if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
				return err
			}
			return deb.WriteFile(dst, tr, 0o644)
		}
		// The build and source links point into linux-headers: not needed.
		return nil
	})
	if err != nil {
		return nil, err
	}
	if !sawKernel || !sawConfig {
		return nil, fmt.Errorf("initramfs: %s lacks boot/vmlinuz-%s or boot/config-%s", debPath, ver, ver)
	}
	if err := depmod(ctx, r, root, ver); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(tmp, kernelComplete), []byte(ver+"\n"), 0o644); err != nil {
		return nil, fmt.Errorf("initramfs: cache: %w", err)
	}
	if err := os.Rename(tmp, dir); err != nil {
		// Another build won the race (use its copy), or a copy was damaged (replace it).
		if k, lerr := loadKernel(dir, ver); lerr == nil {
			return k, nil
		}
		if rerr := os.RemoveAll(dir); rerr != nil {
			return nil, fmt.Errorf("initramfs: replacing the damaged %s: %w", dir, rerr)
		}
		if err := os.Rename(tmp, dir); err != nil {
			return nil, fmt.Errorf("initramfs: cache: %w", err)
		}
	}
	k, err := loadKernel(dir, ver)
	if err != nil {
		return nil, fmt.Errorf("initramfs: %s: %w", dir, err)
	}
	return k, nil
}

// depmod writes modules.dep (and its binary indexes) for root/lib/modules/ver.
func depmod(ctx context.Context, r run.Runner, root, ver string) error {
	if _, err := r.Run(ctx, run.Cmd{Argv: []string{"depmod", "-b", root, ver}}); err != nil {
		if errors.Is(err, run.ErrNotFound) {
			return fmt.Errorf("initramfs: depmod %w (package kmod; scripts/deps.sh ramdisk installs it): %w", ErrMissingTool, err)
		}
		return fmt.Errorf("initramfs: generating modules.dep: %w", err)
	}
	return nil
}

// Compressions of the archive, in order of preference.
const (
	compZstd = "zstd"
	compGzip = "gzip"
)

// compressionFor chooses the archive's compression from the kernel's config: zstd
// (smaller, and faster to unpack at boot) when the kernel can unpack a zstd initramfs
// (CONFIG_RD_ZSTD=y), gzip otherwise, and an error when it can unpack neither.
func compressionFor(config []byte) (string, error) {
	opts := map[string]bool{}
	sc := bufio.NewScanner(bytes.NewReader(config))
	for sc.Scan() {
		if k, v, ok := strings.Cut(strings.TrimSpace(sc.Text()), "="); ok && v == "y" {
			opts[k] = true
		}
	}
	if err := sc.Err(); err != nil {
		return "", fmt.Errorf("initramfs: reading the kernel config: %w", err)
	}
	switch {
	case opts["CONFIG_RD_ZSTD"]:
		return compZstd, nil
	case opts["CONFIG_RD_GZIP"]:
		return compGzip, nil
	}
	return "", errors.New("initramfs: the kernel config has neither CONFIG_RD_ZSTD=y nor CONFIG_RD_GZIP=y: it cannot unpack the ramdisk")
}
