package initramfs

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"

	"github.com/provisioner/provisioner/internal/run"
)

// moduleClass says when a wanted module must be there.
type moduleClass int

const (
	required moduleClass = iota // storage and filesystems: fail when neither a module nor built in
	hardware                    // drivers for physical machines: required when the flavour has hardware
	helper                      // loaded first when present, because nothing else would load them
)

// wantedModule is a module the ramdisk loads at boot.
type wantedModule struct {
	name  string
	class moduleClass
}

// wantedModules are loaded by u-root's init from /lib/modules-load.d/provisioner.conf,
// in this order, each with its dependencies from modules.dep.
//
// The crc32c implementations come first: ext4 (metadata_csum), jbd2 and libcrc32c (xfs)
// ask the crypto API for "crc32c" at mount or load time. On a normal system modprobe
// loads an implementation on demand (a softdep, or request_module); the ramdisk has no
// modprobe and u-root's loader ignores softdeps, so libcrc32c, and with it xfs, would
// fail to load.
var wantedModules = []wantedModule{
	{"crc32c_intel", helper}, {"crc32c_generic", helper},
	{"virtio_pci", required}, {"virtio_blk", required}, {"virtio_scsi", required}, {"virtio_net", required},
	{"nvme", required}, {"ahci", hardware}, {"sd_mod", required},
	{"ext4", required}, {"xfs", required}, {"vfat", required},
	{"nls_cp437", required}, {"nls_ascii", required}, {"nls_utf8", required},
	{"dm_mod", required}, {"md_mod", required}, {"raid1", required},
	{"fuse", required}, {"efivarfs", required},
	{"e1000", hardware}, {"e1000e", hardware}, {"igb", hardware}, {"ixgbe", hardware},
	{"mlx5_core", hardware}, {"bnxt_en", hardware},
}

// modName is the kernel's name of the module file p ("kernel/fs/fat/vfat.ko",
// "crc32c-intel.ko.xz"): the base name without extensions, with "-" as "_", as modprobe
// and the kernel compare them.
func modName(p string) string {
	b := path.Base(p)
	for _, ext := range []string{".xz", ".zst", ".gz"} {
		b = strings.TrimSuffix(b, ext)
	}
	return strings.ReplaceAll(strings.TrimSuffix(b, ".ko"), "-", "_")
}

// modIndex is what a kernel's module tree says about its modules.
type modIndex struct {
	path    map[string]string   // module name → file, relative to the module directory
	deps    map[string][]string // file → files it needs
	builtin map[string]bool     // names of modules built into the kernel
}

// parseModIndex reads modules.dep ("kernel/a.ko: kernel/b.ko kernel/c.ko") and
// modules.builtin ("kernel/fs/ext4/ext4.ko").
func parseModIndex(dep, builtin io.Reader) (*modIndex, error) {
	ix := &modIndex{path: map[string]string{}, deps: map[string][]string{}, builtin: map[string]bool{}}
	sc := bufio.NewScanner(dep)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		file, deps, ok := strings.Cut(line, ":")
		if !ok {
			return nil, fmt.Errorf("modules.dep: malformed line %q", line)
		}
		file = strings.TrimSpace(file)
		ix.path[modName(file)] = file
		ix.deps[file] = strings.Fields(deps)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("modules.dep: %w", err)
	}
	sc = bufio.NewScanner(builtin)
	for sc.Scan() {
		if line := strings.TrimSpace(sc.Text()); line != "" {
			ix.builtin[modName(line)] = true
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("modules.builtin: %w", err)
	}
	return ix, nil
}

// closure returns the files of the named modules and of everything they depend on,
// sorted. modules.dep already lists each module's dependencies transitively; walking
// them anyway keeps a hand-written or partial index correct.
func (ix *modIndex) closure(names []string) ([]string, error) {
	seen := map[string]bool{}
	var stack []string
	for _, n := range names {
		f, ok := ix.path[modName(n)]
		if !ok {
			return nil, fmt.Errorf("module %s is not in modules.dep", n)
		}
		stack = append(stack, f)
	}
	for len(stack) > 0 {
		f := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if seen[f] {
			continue
		}
		seen[f] = true
		for _, d := range ix.deps[f] {
			if _, ok := ix.deps[d]; !ok {
				return nil, fmt.Errorf("modules.dep: %s needs %s, which it does not list", f, d)
			}
			stack = append(stack, d)
		}
	}
	files := make([]string, 0, len(seen))
	for f := range seen {
		files = append(files, f)
	}
	slices.Sort(files)
	return files, nil
}

// moduleChoice is what selectModules decided.
type moduleChoice struct {
	load    []string // names for modules-load.d, in wantedModules order
	files   []string // module files to ship: load and their dependencies
	builtin []string // wanted names built into the kernel
	absent  []string // optional names the flavour has neither as module nor built in
}

// selectModules decides which wanted modules the ramdisk loads and ships. A required
// module (or a hardware one on a hardware flavour) that is neither a module nor built
// in is an error: without it the ramdisk would fail later, on a disk it cannot see.
func selectModules(ix *modIndex, wanted []wantedModule, hasHardware bool) (*moduleChoice, error) {
	c := &moduleChoice{}
	var missing []string
	for _, w := range wanted {
		name := modName(w.name)
		switch {
		case ix.path[name] != "":
			c.load = append(c.load, name)
		case ix.builtin[name]:
			c.builtin = append(c.builtin, name)
		case w.class == required || (w.class == hardware && hasHardware):
			missing = append(missing, w.name)
		default:
			c.absent = append(c.absent, name)
		}
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("initramfs: the kernel has neither as a module nor built in: %s", strings.Join(missing, ", "))
	}
	files, err := ix.closure(c.load)
	if err != nil {
		return nil, fmt.Errorf("initramfs: %w", err)
	}
	c.files = files
	return c, nil
}

// loadConf is /lib/modules-load.d/provisioner.conf for the given module names.
func loadConf(names []string) []byte {
	var b bytes.Buffer
	b.WriteString("# Loaded by u-root's init at boot, each with its dependencies from modules.dep.\n")
	for _, n := range names {
		b.WriteString(n + "\n")
	}
	return b.Bytes()
}

// moduleMeta are the index files of the kernel package copied into the ramdisk's tree:
// modules.builtin tells u-root's loader (and modprobe, for a person at the console)
// which modules need no file; depmod reads modules.order and modules.builtin.modinfo.
var moduleMeta = []string{"modules.builtin", "modules.builtin.modinfo", "modules.order"}

// stageModules copies the chosen module files and the index files of k into
// dir/lib/modules/<version> and runs depmod there, so that the ramdisk's modules.dep
// lists exactly what it ships. It returns the module tree's directory.
func stageModules(ctx context.Context, r run.Runner, k *kernel, files []string, dir string) (string, error) {
	dst := filepath.Join(dir, "lib", "modules", k.Version)
	for _, f := range slices.Concat(files, moduleMeta) {
		from := filepath.Join(k.modDir(), filepath.FromSlash(f))
		to := filepath.Join(dst, filepath.FromSlash(f))
		if err := os.MkdirAll(filepath.Dir(to), 0o755); err != nil {
			return "", fmt.Errorf("initramfs: staging modules: %w", err)
		}
		if err := copyFile(from, to, 0o644); err != nil {
			return "", fmt.Errorf("initramfs: staging modules: %w", err)
		}
	}
	if err := depmod(ctx, r, dir, k.Version); err != nil {
		return "", err
	}
	return dst, nil
}

// copyFile copies the regular file from to a new file to with mode perm.
func copyFile(from, to string, perm os.FileMode) error {
	in, err := os.Open(from)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(to, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, perm)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return fmt.Errorf("copying %s to %s: %w", from, to, err)
	}
	if err := out.Close(); err != nil {
		return fmt.Errorf("copying %s to %s: %w", from, to, err)
	}
	return nil
}
