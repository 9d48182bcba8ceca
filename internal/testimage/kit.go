// Package testimage builds small bootable OS images for tests: a Debian 12 cloud kernel,
// a stage-1 initramfs that loads the virtio block and network modules and mounts the
// root named by root= (a storage image's also assembles md raid1 and activates LVM
// first), and a busybox root filesystem whose /sbin/init prints a marker on the console
// and powers off. The loop-device tests of the bootloader deploy these
// images; QEMU tests boot them and look for the marker.
//
// The kernel and busybox come from apt (apt-get download, no dpkg, no root needed once
// the package lists exist) and are unpacked in Go into a cache shared by every test run,
// so only the first run on a machine pays for the download.
package testimage

import (
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/provisioner/provisioner/internal/deb"
	"github.com/provisioner/provisioner/internal/run"
)

// Kit is the unpacked material shared by every image. Its files belong to the cache and
// are never modified, so one Kit may serve any number of concurrent WriteTarGz calls.
type Kit struct {
	KernelVersion string   // e.g. "6.1.0-56-cloud-amd64"
	Vmlinuz       string   // path of the unpacked kernel image (in the cache)
	Busybox       string   // path of the static busybox binary (in the cache)
	Initrd        string   // path of the stage-1 initramfs (gzip newc cpio) built by Prepare
	Modules       []string // paths of the stage-1 virtio modules (in the cache), in load order; built-in ones are absent
	// NetModules are the virtio_net module and its dependencies, which every stage 1
	// loads after Modules so a VM with a virtio NIC has eth0 (paths in the cache, load
	// order, built-in ones absent).
	NetModules []string
	// StorageModules are the device-mapper and md raid1 modules a storage image loads
	// after Modules (paths in the cache, load order, built-in ones absent).
	StorageModules []string
	// StorageInitrd is the stage-1 initramfs of storage images (Options.Storage), with
	// lvm and mdadm: set by PrepareStorage, empty until then.
	StorageInitrd string
}

// ErrUnavailable is matched when apt cannot provide the kernel and busybox packages (no
// apt, no network), so tests can t.Skip. It is deb.ErrUnavailable, which Prepare's
// errors wrap.
var ErrUnavailable = deb.ErrUnavailable

// The cloud kernel boots in TCG twice as fast as the generic one (LZ4, not XZ) and has
// ext4 built in.
const (
	kernelMetaPkg = "linux-image-cloud-amd64"
	busyboxPkg    = "busybox-static"
)

// Names inside a kit directory (cacheDir/kit-<kernel version>/). The initramfs is there
// too, under a name from initrdName. The .deb files stay in cacheDir itself.
const (
	kitPrefix    = "kit-"
	kitVmlinuz   = "vmlinuz"
	kitBusybox   = "busybox"
	kitModules   = "modules"
	kitLoadOrder = "load-order"
	// kitStorageOrder lists StorageModules. Kits cached before storage images existed
	// lack it, which makes them incomplete: Prepare rebuilds them from the cached .deb.
	kitStorageOrder = "storage-order"
	// kitNetOrder lists NetModules. Kits cached before the images had network support
	// lack it and are rebuilt the same way.
	kitNetOrder   = "net-order"
	kitCompletion = "complete" // written last, holds the kernel version
)

// isRoot is a variable so tests can take both sides of the "apt-get update" decision.
var isRoot = func() bool { return os.Geteuid() == 0 }

// DefaultCacheDir returns $XDG_CACHE_HOME/provisioner-test or $HOME/.cache/provisioner-test
// (fallback os.TempDir()/provisioner-test): a per-user cache, so the ~27 MB of packages
// are fetched once per machine, not once per test run or checkout.
func DefaultCacheDir() string {
	if d, err := os.UserCacheDir(); err == nil {
		return filepath.Join(d, "provisioner-test")
	}
	return filepath.Join(os.TempDir(), "provisioner-test")
}

// Prepare makes the Kit, cached under cacheDir (created if missing; reused on later calls and runs; safe if two test processes race: build into a temp name, rename).
//
// A complete kit already in cacheDir is used as it is, without asking apt anything, so
// later runs work offline and never pick up a new kernel half-way through a test suite;
// delete cacheDir to move to the current kernel. The downloaded .deb files stay in
// cacheDir too, so a lost kit is rebuilt without the network.
func Prepare(ctx context.Context, r run.Runner, cacheDir string) (*Kit, error) {
	if err := os.MkdirAll(cacheDir, 0o755); err != nil {
		return nil, fmt.Errorf("testimage: cache: %w", err)
	}
	k, err := newestKit(cacheDir)
	if err != nil {
		return nil, err
	}
	if k == nil {
		if k, err = fetchKit(ctx, r, cacheDir); err != nil {
			return nil, err
		}
	}
	if err := ensureInitrd(k); err != nil {
		return nil, err
	}
	return k, nil
}

// fetchKit asks apt for the packages (unless they are cached) and builds the kit.
func fetchKit(ctx context.Context, r run.Runner, cacheDir string) (*Kit, error) {
	a := &deb.Apt{Run: r, Dir: cacheDir, MayUpdate: isRoot()}
	pkg, err := a.Depends(ctx, kernelMetaPkg, "linux-image-")
	if err != nil {
		return nil, err
	}
	ver := strings.TrimPrefix(pkg, "linux-image-")
	debs, err := a.Fetch(ctx, pkg, busyboxPkg)
	if err != nil {
		return nil, err
	}
	return buildKit(ctx, cacheDir, ver, debs[0], debs[1])
}

// buildKit unpacks the two packages into a temporary directory, then renames it to kit-<ver>. A rename is atomic, so a kit directory is complete or
// absent, and of two racing processes one wins and the other uses the winner's kit.
func buildKit(ctx context.Context, cacheDir, ver, kernelDeb, busyboxDeb string) (*Kit, error) {
	tmp, err := os.MkdirTemp(cacheDir, "."+kitPrefix+ver+".tmp-")
	if err != nil {
		return nil, fmt.Errorf("testimage: cache: %w", err)
	}
	defer os.RemoveAll(tmp) // a no-op once renamed
	// MkdirTemp makes 0700; the kit is read by whoever runs the tests (a QEMU run as
	// another user, a later non-root run).
	if err := os.Chmod(tmp, 0o755); err != nil {
		return nil, fmt.Errorf("testimage: cache: %w", err)
	}
	kf, err := extractKernel(ctx, kernelDeb, ver, tmp)
	if err != nil {
		return nil, err
	}
	if err := extractBusybox(ctx, busyboxDeb, filepath.Join(tmp, kitBusybox)); err != nil {
		return nil, err
	}
	for file, mods := range map[string][]string{kitLoadOrder: kf.Modules, kitNetOrder: kf.NetModules, kitStorageOrder: kf.StorageModules} {
		var order strings.Builder
		for _, m := range mods {
			order.WriteString(filepath.Base(m) + "\n")
		}
		if err := os.WriteFile(filepath.Join(tmp, kitModules, file), []byte(order.String()), 0o644); err != nil {
			return nil, fmt.Errorf("testimage: cache: %w", err)
		}
	}
	if err := os.WriteFile(filepath.Join(tmp, kitCompletion), []byte(ver+"\n"), 0o644); err != nil {
		return nil, fmt.Errorf("testimage: cache: %w", err)
	}

	final := filepath.Join(cacheDir, kitPrefix+ver)
	if err := os.Rename(tmp, final); err != nil {
		// Renaming onto a directory fails when it is not empty: another process won the
		// race (use its kit), or a kit was damaged by hand (replace it).
		if k, lerr := loadKit(final, ver); lerr == nil {
			return k, nil
		}
		if rerr := os.RemoveAll(final); rerr != nil {
			return nil, fmt.Errorf("testimage: replacing damaged kit: %w", rerr)
		}
		if err := os.Rename(tmp, final); err != nil {
			return nil, fmt.Errorf("testimage: cache: %w", err)
		}
	}
	return loadKit(final, ver)
}

// newestKit returns the complete kit of the highest kernel version in cacheDir, or nil
// when there is none.
func newestKit(cacheDir string) (*Kit, error) {
	dirs, err := filepath.Glob(filepath.Join(cacheDir, kitPrefix+"*"))
	if err != nil {
		return nil, fmt.Errorf("testimage: cache: %w", err)
	}
	var best *Kit
	for _, d := range dirs {
		k, err := loadKit(d, strings.TrimPrefix(filepath.Base(d), kitPrefix))
		if err != nil {
			continue // incomplete or damaged: Prepare rebuilds it
		}
		if best == nil || deb.VersionLess(best.KernelVersion, k.KernelVersion) {
			best = k
		}
	}
	return best, nil
}

// loadKit checks that dir is a complete kit of ver and describes it.
func loadKit(dir, ver string) (*Kit, error) {
	done, err := os.ReadFile(filepath.Join(dir, kitCompletion))
	if err != nil {
		return nil, fmt.Errorf("testimage: kit %s: %w", dir, err)
	}
	if strings.TrimSpace(string(done)) != ver {
		return nil, fmt.Errorf("testimage: kit %s: completion marker names %q, not %q", dir, strings.TrimSpace(string(done)), ver)
	}
	k := &Kit{
		KernelVersion: ver,
		Vmlinuz:       filepath.Join(dir, kitVmlinuz),
		Busybox:       filepath.Join(dir, kitBusybox),
	}
	for file, mods := range map[string]*[]string{kitLoadOrder: &k.Modules, kitNetOrder: &k.NetModules, kitStorageOrder: &k.StorageModules} {
		order, err := os.ReadFile(filepath.Join(dir, kitModules, file))
		if err != nil {
			return nil, fmt.Errorf("testimage: kit %s: %w", dir, err)
		}
		for _, m := range strings.Fields(string(order)) {
			*mods = append(*mods, filepath.Join(dir, kitModules, m))
		}
	}
	for _, p := range slices.Concat([]string{k.Vmlinuz, k.Busybox}, k.Modules, k.NetModules, k.StorageModules) {
		st, err := os.Stat(p)
		if err != nil {
			return nil, fmt.Errorf("testimage: kit %s: %w", dir, err)
		}
		if !st.Mode().IsRegular() {
			return nil, fmt.Errorf("testimage: kit %s: %s: %w", dir, p, fs.ErrInvalid)
		}
	}
	return k, nil
}

// initrdName names a stage-1 initramfs after a hash of what it is built from besides
// the kit's files (which never change under one kit directory): /init, the applet links,
// the module order and the extra files (a storage initramfs's host tools, which change
// with the host's packages). A cache outlives the code, and a kit built by an older
// /init must not be booted by newer tests; the old file stays for a process still
// using it.
func initrdName(kind string, modules []string, extra map[string]File) string {
	h := sha256.New()
	io.WriteString(h, stage1Init)
	for _, a := range stage1Applets {
		io.WriteString(h, "\x00applet "+a)
	}
	for _, m := range modules {
		io.WriteString(h, "\x00module "+filepath.Base(m))
	}
	for _, name := range slices.Sorted(maps.Keys(extra)) {
		fmt.Fprintf(h, "\x00file %s %o %d\x00", name, uint32(extra[name].Mode), len(extra[name].Data))
		h.Write(extra[name].Data)
	}
	return fmt.Sprintf("%s-%x.cpio.gz", kind, h.Sum(nil)[:6])
}

// ensureInitrd sets k.Initrd, building the file next to the kernel when this version of
// the code has not yet built it (0.2 s).
func ensureInitrd(k *Kit) error {
	p, err := cachedInitrd(k, "initrd", slices.Concat(k.Modules, k.NetModules), nil)
	k.Initrd = p
	return err
}

// cachedInitrd returns the path of the stage-1 initramfs of the given modules and extra
// files in k's directory, writing it first when missing: into a temporary name, then
// renamed, so racing processes never read a partial file.
func cachedInitrd(k *Kit, kind string, modules []string, extra map[string]File) (string, error) {
	dir := filepath.Dir(k.Vmlinuz)
	name := filepath.Join(dir, initrdName(kind, modules, extra))
	if st, err := os.Stat(name); err == nil && st.Mode().IsRegular() {
		return name, nil
	}
	f, err := os.CreateTemp(dir, ".initrd-*.tmp")
	if err != nil {
		return "", fmt.Errorf("testimage: cache: %w", err)
	}
	defer os.Remove(f.Name()) // fails harmlessly once renamed
	err = writeInitrd(f, k.Busybox, modules, extra)
	if cerr := f.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("testimage: writing stage-1 initramfs: %w", cerr)
	}
	if err != nil {
		return "", err
	}
	// CreateTemp makes 0600; like the kernel, the initrd is read by whoever runs QEMU.
	if err := os.Chmod(f.Name(), 0o644); err != nil {
		return "", fmt.Errorf("testimage: cache: %w", err)
	}
	if err := os.Rename(f.Name(), name); err != nil {
		return "", fmt.Errorf("testimage: cache: %w", err)
	}
	return name, nil
}
