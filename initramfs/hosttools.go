package initramfs

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"

	"github.com/provisioner/provisioner/internal/elfdeps"
)

// hostTool is a program the provisioner runs (or that a program it runs calls), copied
// from the build host with its libraries, and the Debian package that provides it, so
// that a missing one can be named with its fix. scripts/deps.sh ramdisk installs the
// same packages.
type hostTool struct {
	name string
	pkg  string
}

// hostTools are the programs of the ramdisk that come from the build host. Where they
// come from in the code: partition/apply.go (mke2fs, mkfs.*, mkswap, mdadm, lvm),
// deploy (xz, xfs_growfs, tune2fs/resize2fs/e2fsck/xfs_admin for raw images, rsync for
// trees an rsync daemon serves), bootloader/install.go (grub-mkimage, mmd, mcopy, and
// grub-bios-setup, which comes with the i386-pc platform files below and needs a subset of
// grub-install's libraries), bootloader/osprober.go (os-prober, linux-boot-prober, which call grub-mount,
// grub-probe, blkid, udevadm and lvs), internal/engine (blkid, lvm, efibootmgr). The rest
// is for a person at the console: grub-install, sgdisk, mdir, dmsetup, wipefs.
var hostTools = []hostTool{
	{"mke2fs", "e2fsprogs"}, {"mkfs.ext4", "e2fsprogs"}, {"tune2fs", "e2fsprogs"},
	{"resize2fs", "e2fsprogs"}, {"e2fsck", "e2fsprogs"},
	// xfs_admin is a shell script around xfs_db (and xfs_repair for -c and -O).
	{"mkfs.xfs", "xfsprogs"}, {"xfs_admin", "xfsprogs"}, {"xfs_db", "xfsprogs"},
	{"xfs_repair", "xfsprogs"}, {"xfs_growfs", "xfsprogs"},
	{"mkfs.vfat", "dosfstools"}, {"fsck.vfat", "dosfstools"},
	{"mkswap", "util-linux"}, {"blkid", "util-linux"}, {"wipefs", "util-linux"},
	// The code runs "lvm <command>"; os-prober runs lvs. The other links are what a
	// person types.
	{"lvm", "lvm2"}, {"lvs", "lvm2"}, {"vgs", "lvm2"}, {"pvs", "lvm2"}, {"vgchange", "lvm2"},
	{"vgscan", "lvm2"}, {"pvscan", "lvm2"}, {"lvscan", "lvm2"}, {"lvdisplay", "lvm2"},
	{"vgdisplay", "lvm2"}, {"pvdisplay", "lvm2"}, {"dmsetup", "dmsetup"},
	{"mdadm", "mdadm"},
	{"grub-install", "grub2-common"}, {"grub-mkimage", "grub-common"}, {"grub-editenv", "grub-common"},
	{"grub-probe", "grub-common"}, {"grub-mount", "grub-common"}, {"grub-mkrelpath", "grub-common"},
	{"os-prober", "os-prober"}, {"linux-boot-prober", "os-prober"},
	{"mmd", "mtools"}, {"mcopy", "mtools"}, {"mdir", "mtools"},
	{"efibootmgr", "efibootmgr"},
	{"udevadm", "udev"},
	{"xz", "xz-utils"},
	{"rsync", "rsync"},
	{"sgdisk", "gdisk"},
}

// hostPath is a directory or file (not a program in PATH) copied from the build host.
type hostPath struct {
	path string
	pkg  string
}

// gconvDir is glibc's directory of iconv modules on amd64.
const gconvDir = "/usr/lib/x86_64-linux-gnu/gconv"

// hostPaths are the data the tools read at run time.
var hostPaths = []hostPath{
	// grub-install and grub-mkimage read the platform files and fonts from here.
	{"/usr/lib/grub/i386-pc", "grub-pc-bin"},
	{"/usr/lib/grub/x86_64-efi", "grub-efi-amd64-bin"},
	{"/usr/share/grub", "grub-common"},
	// os-prober and linux-boot-prober are shell scripts that source and run these.
	{"/usr/share/os-prober", "os-prober"},
	{"/usr/lib/os-prober", "os-prober"},
	{"/usr/lib/os-probes", "os-prober"},
	{"/usr/lib/linux-boot-probes", "os-prober"},
	// mtools converts file names through iconv to codepage 850 and fails ("Error
	// converting to codepage 850") when glibc cannot dlopen the module: measured with
	// an empty gconv directory. The cache alone finds the module.
	{gconvDir + "/gconv-modules", "libc6"},
	{gconvDir + "/gconv-modules.cache", "libc6"},
	{gconvDir + "/IBM850.so", "libc6"},
	// The certificate authorities Go's TLS client trusts: https image, spec and callback
	// URLs are verified against them.
	{"/etc/ssl/certs/ca-certificates.crt", "ca-certificates"},
}

// toolDirs are searched, in order, for the host tools.
var toolDirs = elfdeps.ToolDirs

// ErrMissingTool is wrapped when a tool or data directory the ramdisk needs is not
// installed on the build host; the message names each one with its Debian package.
var ErrMissingTool = errors.New("missing on the build host")

// findHostTools returns the host path of every tool and checks every host path,
// reporting all that are missing in one error.
func findHostTools(tools []hostTool, paths []hostPath, dirs []string) ([]string, error) {
	var found, missing []string
	pkgs := map[string]bool{}
	for _, t := range tools {
		p := elfdeps.FindProgram(t.name, dirs)
		if p == "" {
			missing = append(missing, fmt.Sprintf("%s (package %s)", t.name, t.pkg))
			pkgs[t.pkg] = true
			continue
		}
		found = append(found, p)
	}
	for _, hp := range paths {
		if _, err := os.Stat(hp.path); err != nil {
			missing = append(missing, fmt.Sprintf("%s (package %s)", hp.path, hp.pkg))
			pkgs[hp.pkg] = true
			continue
		}
		found = append(found, hp.path)
	}
	if len(missing) > 0 {
		names := make([]string, 0, len(pkgs))
		for p := range pkgs {
			names = append(names, p)
		}
		slices.Sort(names)
		return nil, fmt.Errorf("initramfs: %w: %s; install them with scripts/deps.sh ramdisk or apt-get install %s",
			ErrMissingTool, strings.Join(missing, ", "), strings.Join(names, " "))
	}
	return found, nil
}

// hostAdder copies host files into a tree at their own paths, keeping symlinks as
// symlinks (the link and what it points to), and adding each ELF program's loader and
// libraries.
type hostAdder struct {
	t    *tree
	libs *elfdeps.Resolver
	done map[string]bool // host paths already added
}

func newHostAdder(t *tree, libs *elfdeps.Resolver) *hostAdder {
	return &hostAdder{t: t, libs: libs, done: map[string]bool{}}
}

// realDir returns p with the symlinks in its directory part resolved and its last
// element kept, so that a symlink is added as a symlink at the path where it lives.
func realDir(p string) (string, error) {
	dir, err := filepath.EvalSymlinks(filepath.Dir(p))
	if err != nil {
		return "", err
	}
	return filepath.Join(dir, filepath.Base(p)), nil
}

// add adds the host file, symlink or directory tree at the absolute path p.
func (h *hostAdder) add(p string) error {
	if !filepath.IsAbs(p) {
		return fmt.Errorf("initramfs: host path %q is not absolute", p)
	}
	real, err := realDir(filepath.Clean(p))
	if err != nil {
		return fmt.Errorf("initramfs: %w", err)
	}
	if h.done[real] {
		return nil
	}
	h.done[real] = true
	st, err := os.Lstat(real)
	if err != nil {
		return fmt.Errorf("initramfs: %w", err)
	}
	switch {
	case st.Mode()&fs.ModeSymlink != 0:
		return h.addSymlink(real)
	case st.IsDir():
		return h.t.hostTree(h, real)
	case !st.Mode().IsRegular():
		return fmt.Errorf("initramfs: %s: unsupported file type %s", real, st.Mode().Type())
	}
	perm := st.Mode() & (fs.ModePerm | fs.ModeSetuid | fs.ModeSetgid | fs.ModeSticky)
	if err := h.t.hostFile(real, real, perm); err != nil {
		return err
	}
	libs, err := h.libs.Needs(real)
	if err != nil {
		return fmt.Errorf("initramfs: %w", err)
	}
	for _, l := range libs {
		if err := h.add(l); err != nil {
			return err
		}
	}
	return nil
}

// addSymlink adds the symlink at the host path real and what it points to. The target
// is rewritten to the canonical archive path (relative if it was relative) so that it
// resolves inside the ramdisk even where the host's own text would pass through a
// directory the archive lays out differently.
func (h *hostAdder) addSymlink(real string) error {
	target, err := os.Readlink(real)
	if err != nil {
		return fmt.Errorf("initramfs: %w", err)
	}
	abs := target
	if !filepath.IsAbs(target) {
		abs = filepath.Join(filepath.Dir(real), target)
	}
	dst, err := realDir(abs)
	if err != nil {
		return fmt.Errorf("initramfs: %s -> %s: %w", real, target, err)
	}
	link := "/" + canon(dst)
	if !filepath.IsAbs(target) {
		if link, err = filepath.Rel(path.Dir(canon(real)), canon(dst)); err != nil {
			return fmt.Errorf("initramfs: %s -> %s: %w", real, target, err)
		}
	}
	if err := h.t.symlink(real, link); err != nil {
		return err
	}
	return h.add(dst)
}
