package disk

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Sys locates the kernel interfaces the package reads (sysfs, /dev, procfs). The zero value
// means the real ones; tests point the roots at fake trees in t.TempDir() so that every
// lookup can be checked on any machine without real disks.
type Sys struct {
	SysRoot  string // "/sys" when empty
	DevRoot  string // "/dev" when empty
	ProcRoot string // "/proc" when empty
}

func (s Sys) sysRoot() string  { return rootOr(s.SysRoot, "/sys") }
func (s Sys) devRoot() string  { return rootOr(s.DevRoot, "/dev") }
func (s Sys) procRoot() string { return rootOr(s.ProcRoot, "/proc") }

func rootOr(root, def string) string {
	if root == "" {
		return def
	}
	return root
}

// classBlock is the sysfs directory of a block device (disk or partition) by kernel name.
func (s Sys) classBlock(name string) string {
	return filepath.Join(s.sysRoot(), "class", "block", name)
}

// node is the /dev path of a block device by kernel name: devtmpfs names nodes exactly as
// the kernel names the devices, and there is no udev to rename them.
func (s Sys) node(name string) string {
	return filepath.Join(s.devRoot(), name)
}

// isPartition reports whether the kernel device name is a partition: sysfs gives every
// partition (and only partitions) a "partition" attribute.
func (s Sys) isPartition(name string) bool {
	_, err := os.Stat(filepath.Join(s.classBlock(name), "partition"))
	return err == nil
}

// kernelName finds the kernel's name for the block device at path (which may be a symlink
// or a node with another name, as /dev/mapper/x is). A real block device is looked up by its
// major:minor in SysRoot/dev/block; anything else (a fake tree) by the base name of the
// resolved path, which must exist in SysRoot/class/block.
func (s Sys) kernelName(path string) (string, error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return "", fmt.Errorf("%s: %w", path, ErrNotFound)
		}
		return "", fmt.Errorf("%s: %w", path, err)
	}
	if st.Mode&unix.S_IFMT == unix.S_IFBLK {
		mm := fmt.Sprintf("%d:%d", unix.Major(uint64(st.Rdev)), unix.Minor(uint64(st.Rdev)))
		if target, err := os.Readlink(filepath.Join(s.sysRoot(), "dev", "block", mm)); err == nil {
			return filepath.Base(target), nil
		}
	}
	resolved, err := filepath.EvalSymlinks(path)
	if err != nil {
		return "", fmt.Errorf("%s: %w", path, err)
	}
	name := filepath.Base(resolved)
	if _, err := os.Stat(s.classBlock(name)); err != nil {
		return "", fmt.Errorf("%s is not a block device the kernel knows (no %s)", path, s.classBlock(name))
	}
	return name, nil
}

// sysPart is one partition as sysfs shows it. Start and Size are in 512-byte units, which
// sysfs uses whatever the device's logical sector size is.
type sysPart struct {
	Name   string
	Number int
	Start  uint64
	Size   uint64
	Dev    string // "major:minor"
}

// partitions lists the partitions the kernel currently has for disk, by number. Entries that
// vanish while being read (a concurrent delete) are skipped.
func (s Sys) partitions(disk string) ([]sysPart, error) {
	dir := s.classBlock(disk)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("listing partitions of %s: %w", disk, err)
	}
	var parts []sysPart
	for _, e := range ents {
		pdir := filepath.Join(dir, e.Name())
		num, err := readUint(filepath.Join(pdir, "partition"))
		if err != nil {
			continue // not a partition (queue/, holders/, dev, ...) or just removed
		}
		p := sysPart{Name: e.Name(), Number: int(num)}
		if p.Start, err = readUint(filepath.Join(pdir, "start")); err != nil {
			continue
		}
		if p.Size, err = readUint(filepath.Join(pdir, "size")); err != nil {
			continue
		}
		p.Dev, _ = readTrim(filepath.Join(pdir, "dev"))
		parts = append(parts, p)
	}
	sort.Slice(parts, func(i, j int) bool { return parts[i].Number < parts[j].Number })
	return parts, nil
}

func readTrim(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(string(b)), nil
}

func readUint(path string) (uint64, error) {
	s, err := readTrim(path)
	if err != nil {
		return 0, err
	}
	return strconv.ParseUint(s, 10, 64)
}

// EFIVars reports whether the running firmware exposes EFI variables (booted in UEFI
// mode with efivarfs mounted), so that an NVRAM boot entry can be written.
func (s Sys) EFIVars() bool {
	entries, err := os.ReadDir(filepath.Join(s.sysRoot(), "firmware", "efi", "efivars"))
	return err == nil && len(entries) > 0
}
