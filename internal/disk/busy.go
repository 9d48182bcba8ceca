package disk

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// ErrBusy is matched by errors.Is for every *BusyError, so callers can refuse a disk without
// parsing reasons.
var ErrBusy = errors.New("disk is busy")

// BusyError says why a disk cannot be written. Each reason names the holder, e.g.
// "/dev/vda2 is mounted at /mnt/x", "/dev/vda3 is active swap",
// "/dev/vda is held by dm-0 (vg-root)", "/dev/sdb1 is held by md127", so an operator can
// free the disk without guessing.
type BusyError struct {
	Dev     string   // the device as the caller named it
	Reasons []string // one sentence per holder, disk first, then partitions by number
}

// Error returns "<dev> is busy: <reasons joined with "; ">".
func (e *BusyError) Error() string {
	return e.Dev + " is busy: " + strings.Join(e.Reasons, "; ")
}

// Is makes errors.Is(err, ErrBusy) true for every *BusyError.
func (e *BusyError) Is(target error) bool { return target == ErrBusy }

// CheckNotBusy returns a *BusyError when the disk dev or any of its partitions is mounted
// (ProcRoot/self/mountinfo, compared by major:minor), is active swap (ProcRoot/swaps, by path
// and by major:minor), or has holders (SysRoot/class/block/<dev>/holders and each partition's
// holders; dm holders are named by SysRoot/class/block/dm-N/dm/name when present).
//
// When none of those apply and dev is a real block device, it also tries an O_EXCL open of
// the disk: the kernel refuses it while anything has claimed the disk or a partition, which
// catches users the files above cannot show (a mount in another mount namespace, a running
// mkfs). That check does not conflict with LockDevice, whose open is not exclusive.
// Other errors (unreadable sysfs or procfs) are returned as such: an unknown state is not
// "not busy".
func (s Sys) CheckNotBusy(ctx context.Context, dev string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	disk, err := s.kernelName(dev)
	if err != nil {
		return fmt.Errorf("checking whether %s is busy: %w", dev, err)
	}
	devs := []sysPart{{Name: disk}}
	if devs[0].Dev, err = readTrim(filepath.Join(s.classBlock(disk), "dev")); err != nil {
		return fmt.Errorf("checking whether %s is busy: %w", dev, err)
	}
	parts, err := s.partitions(disk)
	if err != nil {
		return fmt.Errorf("checking whether %s is busy: %w", dev, err)
	}
	devs = append(devs, parts...)

	mounts, err := readMountinfo(filepath.Join(s.procRoot(), "self", "mountinfo"))
	if err != nil {
		return fmt.Errorf("checking whether %s is busy: %w", dev, err)
	}
	swaps, err := readSwaps(filepath.Join(s.procRoot(), "swaps"))
	if err != nil {
		return fmt.Errorf("checking whether %s is busy: %w", dev, err)
	}

	var reasons []string
	for _, d := range devs {
		node := s.node(d.Name)
		seen := map[string]bool{}
		for _, m := range mounts {
			if (m.dev == d.Dev || s.sameNode(m.source, d.Name)) && !seen[m.point] {
				seen[m.point] = true
				reasons = append(reasons, fmt.Sprintf("%s is mounted at %s", node, m.point))
			}
		}
		for _, sw := range swaps {
			if s.sameNode(sw, d.Name) || devNumber(sw) == d.Dev && d.Dev != "" {
				reasons = append(reasons, fmt.Sprintf("%s is active swap", node))
				break
			}
		}
		holders, err := s.holders(d.Name)
		if err != nil {
			return fmt.Errorf("checking whether %s is busy: %w", dev, err)
		}
		for _, h := range holders {
			reasons = append(reasons, fmt.Sprintf("%s is held by %s", node, h))
		}
	}
	if len(reasons) == 0 {
		if r := exclusiveUser(dev); r != "" {
			reasons = append(reasons, r)
		}
	}
	if len(reasons) > 0 {
		return &BusyError{Dev: dev, Reasons: reasons}
	}
	return nil
}

// sameNode reports whether path (a mount source or swap file name as the kernel prints it)
// is the /dev node of the kernel device name.
func (s Sys) sameNode(path, name string) bool {
	return path == "/dev/"+name || path == s.node(name)
}

// holders names the holders of a block device, dm devices with their dm name.
func (s Sys) holders(name string) ([]string, error) {
	ents, err := os.ReadDir(filepath.Join(s.classBlock(name), "holders"))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range ents {
		h := e.Name()
		if dm, err := readTrim(filepath.Join(s.classBlock(h), "dm", "name")); err == nil && dm != "" {
			h += " (" + dm + ")"
		}
		out = append(out, h)
	}
	sort.Strings(out)
	return out, nil
}

// exclusiveUser tries an O_EXCL open of a real block device and describes who holds it when
// the kernel says EBUSY. It says nothing about anything else (a fake tree, a missing node).
func exclusiveUser(dev string) string {
	var st unix.Stat_t
	if err := unix.Stat(dev, &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFBLK {
		return ""
	}
	fd, err := unix.Open(dev, unix.O_RDONLY|unix.O_EXCL|unix.O_CLOEXEC, 0)
	if errors.Is(err, unix.EBUSY) {
		return dev + " is in exclusive use (the kernel refused an O_EXCL open: a mount in another namespace, mkfs, or another claim)"
	}
	if err == nil {
		unix.Close(fd)
	}
	return ""
}

type mountEntry struct {
	dev    string // "major:minor"
	point  string
	source string
}

// readMountinfo parses proc(5) mountinfo: "36 35 98:0 /mnt1 /mnt/parent rw ... - ext3 /dev/root rw".
func readMountinfo(path string) ([]mountEntry, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []mountEntry
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 {
			continue
		}
		m := mountEntry{dev: fields[2], point: unescapeOctal(fields[4])}
		for i := 5; i < len(fields)-2; i++ {
			if fields[i] == "-" {
				m.source = unescapeOctal(fields[i+2])
				break
			}
		}
		out = append(out, m)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	return out, nil
}

// readSwaps returns the file names of active swap areas from /proc/swaps (header skipped).
func readSwaps(path string) ([]string, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil // a kernel without swap support has no /proc/swaps
	}
	if err != nil {
		return nil, err
	}
	var out []string
	for i, line := range strings.Split(string(b), "\n") {
		fields := strings.Fields(line)
		if i == 0 || len(fields) == 0 {
			continue
		}
		out = append(out, unescapeOctal(fields[0]))
	}
	return out, nil
}

// devNumber is the "major:minor" of a block device node, "" for anything else.
func devNumber(path string) string {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFBLK {
		return ""
	}
	return fmt.Sprintf("%d:%d", unix.Major(uint64(st.Rdev)), unix.Minor(uint64(st.Rdev)))
}

// unescapeOctal undoes the kernel's \ooo escaping of space, tab, newline and backslash in
// mountinfo and swaps paths.
func unescapeOctal(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
