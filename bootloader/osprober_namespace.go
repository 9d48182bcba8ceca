package bootloader

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/provisioner/provisioner/internal/disk"
)

// What the child hides or replaces: os-prober hard-codes /sys/block and its state
// directory, blkid reads /proc/partitions.
const (
	sysBlockDir    = "/sys/block"
	sysDevBlock    = "/sys/dev/block"
	proberState    = "/var/lib/os-prober"
	proberTmp      = proberState + "/provisioner-tmp"
	proberLVMConf  = proberState + "/provisioner-lvm"
	procPartitions = "/proc/partitions"
)

// confineToDisks narrows what this process's mount namespace shows of the machine's
// disks to the given whole disks and the devices stacked on them, as ConfinedProberMain
// describes, and returns that confinement and the probers' environment (privateState).
// Its mounts last as long as the namespace.
func confineToDisks(disks []string) (confinement, []string, error) {
	// A new namespace still shares propagation with the machine's mounts: without this,
	// the tmpfs over /sys/block would appear in every namespace.
	if err := disk.MakeTreePrivate("/"); err != nil {
		return confinement{}, nil, err
	}
	names := make([]string, 0, len(disks))
	for _, d := range disks {
		n, err := wholeDiskName(d)
		if err != nil {
			return confinement{}, nil, err
		}
		names = append(names, n)
	}
	c, err := newConfinement(sysBlockDir, names)
	if err != nil {
		return c, nil, err
	}
	if err := c.hide(sysBlockDir); err != nil {
		return c, nil, err
	}
	env, err := privateState(c)
	if err != nil {
		return c, nil, err
	}
	return c, env, nil
}

// confinement is what the child's /sys/block keeps.
type confinement struct {
	links map[string]string // /sys/block entry name -> absolute sysfs directory it points to
	names map[string]bool   // kernel names of those devices and of their partitions
}

// allows reports whether the block device node partition is one of c's devices or their
// partitions.
func (c confinement) allows(partition string) bool {
	n, err := blockName(partition)
	return err == nil && c.names[n]
}

// newConfinement finds, in the real sysBlock directory, the given whole disks and every device
// stacked on them, directly or not (a dm or md device one of whose slaves is one of
// them or their partitions), with their partitions.
func newConfinement(sysBlock string, disks []string) (confinement, error) {
	c := confinement{links: map[string]string{}, names: map[string]bool{}}
	add := func(name string) error {
		dir := filepath.Join(sysBlock, name)
		target, err := filepath.EvalSymlinks(dir)
		if err != nil {
			return fmt.Errorf("%s: %w", dir, err)
		}
		c.links[name] = target
		c.names[name] = true
		ents, err := os.ReadDir(dir)
		if err != nil {
			return err
		}
		for _, e := range ents {
			if _, err := os.Stat(filepath.Join(dir, e.Name(), "partition")); err == nil {
				c.names[e.Name()] = true
			}
		}
		return nil
	}
	for _, d := range disks {
		if _, ok := c.links[d]; ok {
			continue
		}
		if err := add(d); err != nil {
			return c, fmt.Errorf("disk %s is not a whole disk in %s: %w", d, sysBlock, err)
		}
	}
	all, err := os.ReadDir(sysBlock)
	if err != nil {
		return c, err
	}
	// Stacks are shallow (dm on md on a partition); repeat until nothing is added.
	for changed := true; changed; {
		changed = false
		for _, e := range all {
			x := e.Name()
			if _, ok := c.links[x]; ok {
				continue
			}
			slaves, err := os.ReadDir(filepath.Join(sysBlock, x, "slaves"))
			if err != nil {
				continue // no slaves directory: not stacked on anything
			}
			for _, s := range slaves {
				if c.names[s.Name()] {
					if err := add(x); err != nil {
						return c, err
					}
					changed = true
					break
				}
			}
		}
	}
	return c, nil
}

// hide mounts a tmpfs over sysBlock holding only c's symlinks.
func (c confinement) hide(sysBlock string) error {
	if err := disk.MountTmpfs("provisioner-sysblock", sysBlock, "mode=0755,size=1m", true); err != nil {
		return err
	}
	for name, target := range c.links {
		if err := os.Symlink(target, filepath.Join(sysBlock, name)); err != nil {
			return fmt.Errorf("hiding other disks: %w", err)
		}
	}
	return nil
}

// privateState mounts a tmpfs over os-prober's state directory and returns the
// environment for the probers: temporary files there rather than in the machine's /tmp
// (a killed os-prober cannot clean up), no debug lines (each one spawns logger into the
// machine's syslog), C locale, an LVM configuration that only sees c's devices, since
// os-prober asks lvs for volumes and lvs does not look at /sys/block, and a fresh blkid
// cache over a /proc/partitions that lists only c's devices.
func privateState(c confinement) ([]string, error) {
	if fi, err := os.Stat(proberState); err != nil || !fi.IsDir() {
		return nil, fmt.Errorf("os-prober's state directory %s is missing (is os-prober installed?)", proberState)
	}
	if err := disk.MountTmpfs("provisioner-os-prober", proberState, "mode=0755,size=4m", false); err != nil {
		return nil, err
	}
	for _, d := range []string{proberTmp, proberLVMConf} {
		if err := os.Mkdir(d, 0o700); err != nil {
			return nil, err
		}
	}
	if err := os.WriteFile(filepath.Join(proberLVMConf, "lvm.conf"), []byte(lvmConfig(c.names)), 0o600); err != nil {
		return nil, err
	}
	// A separate /boot is found through fstab's UUID= with blkid, which scans every
	// device in /proc/partitions (and remembers others in its cache): another disk
	// holding a copy of the same image would answer. Show it only ours.
	parts, err := os.ReadFile(procPartitions)
	if err != nil {
		return nil, err
	}
	filtered := filepath.Join(proberState, "provisioner-partitions")
	if err := os.WriteFile(filtered, filterPartitions(parts, c.names), 0o444); err != nil {
		return nil, err
	}
	if err := disk.BindMount(filtered, procPartitions); err != nil {
		return nil, fmt.Errorf("hiding other disks from blkid: %w", err)
	}
	return []string{
		"LC_ALL=C",
		"OS_PROBER_DISABLE_DEBUG=1",
		"OS_PROBER_TMP=" + proberTmp,
		"LVM_SYSTEM_DIR=" + proberLVMConf,
		"LVM_SUPPRESS_FD_WARNINGS=1",
		"BLKID_FILE=" + filepath.Join(proberTmp, "blkid.tab"),
	}, nil
}

// filterPartitions keeps the header of a /proc/partitions text and the lines of the
// named devices ("major minor #blocks name").
func filterPartitions(text []byte, names map[string]bool) []byte {
	var b bytes.Buffer
	for i, line := range strings.SplitAfter(string(text), "\n") {
		f := strings.Fields(line)
		if i == 0 || len(f) == 0 || (len(f) == 4 && names[f[3]]) {
			b.WriteString(line)
		}
	}
	return b.Bytes()
}

// plainDevName matches the kernel names an LVM filter can hold without escaping; a
// device with another name is simply not accepted, which only hides more.
var plainDevName = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)

// lvmConfig is an lvm.conf whose filters accept only the named devices as physical
// volumes, so lvs lists no volume of another disk.
func lvmConfig(names map[string]bool) string {
	var accept []string
	for n := range names {
		if plainDevName.MatchString(n) {
			accept = append(accept, fmt.Sprintf(`"a|^/dev/%s$|"`, n))
		}
	}
	slices.Sort(accept)
	filter := "[ " + strings.Join(append(accept, `"r|.*|"`), ", ") + " ]"
	return "devices {\n\tfilter = " + filter + "\n\tglobal_filter = " + filter + "\n}\n"
}

// wholeDiskName returns the kernel name of the whole disk dev ("loop3"), refusing a
// partition: os-prober would otherwise be shown the whole disk of a partition.
func wholeDiskName(dev string) (string, error) {
	name, err := blockName(dev)
	if err != nil {
		return "", err
	}
	if _, err := os.Stat(filepath.Join(sysBlockDir, name)); err != nil {
		return "", fmt.Errorf("%s (%s) is not a whole disk: %w", dev, name, err)
	}
	return name, nil
}

// blockName returns the kernel name of the block device node dev ("loop3p1"), through
// its device number in /sys/dev/block, which stays intact when /sys/block is hidden.
func blockName(dev string) (string, error) {
	var st unix.Stat_t
	if err := unix.Stat(dev, &st); err != nil {
		return "", fmt.Errorf("%s: %w", dev, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFBLK {
		return "", fmt.Errorf("%s is not a block device", dev)
	}
	link := fmt.Sprintf("%s/%d:%d", sysDevBlock, unix.Major(st.Rdev), unix.Minor(st.Rdev))
	target, err := os.Readlink(link)
	if err != nil {
		return "", fmt.Errorf("%s: %w", dev, err)
	}
	return filepath.Base(target), nil
}
