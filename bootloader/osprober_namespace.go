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
	proberMounts   = proberState + "/provisioner-volumes"
	proberInit     = "/usr/lib/os-probes/init"
	procPartitions = "/proc/partitions"
)

// confineToVolumes narrows what this process's mount namespace shows of the machine's
// disks to v, as ConfinedProberMain describes, and returns that confinement and the
// probers' environment (privateState). Its mounts last as long as the namespace.
func confineToVolumes(v ProberVolumes) (confinement, []string, error) {
	// A new namespace still shares propagation with the machine's mounts: without this,
	// the tmpfs over /sys/block would appear in every namespace.
	if err := disk.MakeTreePrivate("/"); err != nil {
		return confinement{}, nil, err
	}
	kernelNames := func(devs []string) ([]string, error) {
		out := make([]string, 0, len(devs))
		for _, d := range devs {
			n, err := blockName(d)
			if err != nil {
				return nil, err
			}
			out = append(out, n)
		}
		return out, nil
	}
	roots, err := kernelNames(v.Roots)
	if err != nil {
		return confinement{}, nil, err
	}
	boots, err := kernelNames(v.Boot)
	if err != nil {
		return confinement{}, nil, err
	}
	c, err := newConfinement(sysBlockDir, roots, boots)
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
	// links are /sys/block entries kept as they are: entry name -> the absolute sysfs
	// directory it points to (the dm and md devices the volumes are, or are stacked on).
	links map[string]string
	// mirrors are /sys/block entries rebuilt as directories: a disk holding one of the
	// shown partitions, with symlinks to every entry of its sysfs directory but the
	// partitions os-prober must not look at. disk -> entry name -> absolute target.
	mirrors map[string]map[string]string
	// startless are the /boot volumes' partitions in a mirror, rebuilt as directories
	// with every entry but start: blkid reads a partition's dev there, and os-prober
	// walks only partitions with a start. "disk/partition" -> entry name -> target.
	startless map[string]map[string]string
	// names are the kernel names of every device shown (the volumes, what they are
	// stacked on, and the disks of those partitions): /proc/partitions and LVM see these.
	names map[string]bool
	// roots are the kernel names of the roots: the only devices whose report is kept.
	roots map[string]bool
}

// showsDeviceMapper reports whether a shown device is a device-mapper one (an LVM
// logical volume), which os-prober finds only through lvs.
func (c confinement) showsDeviceMapper() bool {
	for n := range c.names {
		if strings.HasPrefix(n, "dm-") {
			return true
		}
	}
	return false
}

// allows reports whether the block device node partition is one of c's roots.
func (c confinement) allows(partition string) bool {
	n, err := blockName(partition)
	return err == nil && c.roots[n]
}

// sysfsIndex is what a /sys/block directory holds: its devices and their partitions.
type sysfsIndex struct {
	whole  map[string]string // device name -> absolute sysfs directory
	partOf map[string]string // partition name -> its device's name
}

func indexSysBlock(sysBlock string) (sysfsIndex, error) {
	ix := sysfsIndex{whole: map[string]string{}, partOf: map[string]string{}}
	all, err := os.ReadDir(sysBlock)
	if err != nil {
		return ix, err
	}
	for _, e := range all {
		dir := filepath.Join(sysBlock, e.Name())
		target, err := filepath.EvalSymlinks(dir)
		if err != nil {
			return ix, fmt.Errorf("%s: %w", dir, err)
		}
		ix.whole[e.Name()] = target
		ents, err := os.ReadDir(dir)
		if err != nil {
			return ix, err
		}
		for _, p := range ents {
			if _, err := os.Stat(filepath.Join(dir, p.Name(), "partition")); err == nil {
				ix.partOf[p.Name()] = e.Name()
			}
		}
	}
	return ix, nil
}

// newConfinement decides, from the real sysBlock directory, what the child's /sys/block
// shows: the roots and /boot volumes (kernel names) and, as today's LVM and md need them
// to assemble a volume, every device they are stacked on (a dm or md device's slaves,
// recursively). A disk is shown as a directory listing only its partitions among those,
// less the /boot volumes: os-prober then walks the roots and the members of a root's
// volume group or array (an LVM or RAID member it skips without mounting), never the
// multiboot partition, the ESP, BIOS boot, swap or another image's volumes.
func newConfinement(sysBlock string, roots, boots []string) (confinement, error) {
	c := confinement{links: map[string]string{}, mirrors: map[string]map[string]string{}, startless: map[string]map[string]string{},
		names: map[string]bool{}, roots: map[string]bool{}}
	ix, err := indexSysBlock(sysBlock)
	if err != nil {
		return c, err
	}
	shown := map[string]bool{}
	queue := slices.Concat(roots, boots)
	for len(queue) > 0 {
		n := queue[0]
		queue = queue[1:]
		if shown[n] {
			continue
		}
		_, whole := ix.whole[n]
		if _, part := ix.partOf[n]; !whole && !part {
			return c, fmt.Errorf("volume %s is not a block device in %s", n, sysBlock)
		}
		shown[n] = true
		if !whole {
			continue
		}
		slaves, err := os.ReadDir(filepath.Join(sysBlock, n, "slaves"))
		if err != nil {
			continue // no slaves directory: not stacked on anything
		}
		for _, s := range slaves {
			queue = append(queue, s.Name())
		}
	}
	for _, r := range roots {
		c.roots[r] = true
	}
	bootOnly := map[string]bool{}
	for _, b := range boots {
		bootOnly[b] = !c.roots[b]
	}
	// A device with partitions is mirrored, so that only the chosen ones show; one
	// without is linked as it is.
	hasParts := map[string]bool{}
	for _, d := range ix.partOf {
		hasParts[d] = true
	}
	for n := range shown {
		c.names[n] = true
		if d, ok := ix.partOf[n]; ok {
			c.names[d] = true
			if c.mirrors[d] == nil {
				c.mirrors[d] = map[string]string{}
			}
			continue
		}
		if !hasParts[n] {
			c.links[n] = ix.whole[n]
		} else if c.mirrors[n] == nil {
			c.mirrors[n] = map[string]string{}
		}
	}
	for d, m := range c.mirrors {
		ents, err := os.ReadDir(ix.whole[d])
		if err != nil {
			return c, err
		}
		for _, e := range ents {
			target := filepath.Join(ix.whole[d], e.Name())
			switch {
			case ix.partOf[e.Name()] == d && !shown[e.Name()]:
			case ix.partOf[e.Name()] == d && bootOnly[e.Name()]:
				if err := c.addStartless(d, e.Name(), target); err != nil {
					return c, err
				}
			default:
				m[e.Name()] = target
			}
		}
	}
	return c, nil
}

// addStartless records the partition part of disk, whose sysfs directory is dir, as a
// directory of links to dir's entries but start.
func (c confinement) addStartless(disk, part, dir string) error {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	m := map[string]string{}
	for _, e := range ents {
		if e.Name() != "start" {
			m[e.Name()] = filepath.Join(dir, e.Name())
		}
	}
	c.startless[disk+"/"+part] = m
	return nil
}

// hide mounts a tmpfs over sysBlock holding only c's entries.
func (c confinement) hide(sysBlock string) error {
	if err := disk.MountTmpfs("provisioner-sysblock", sysBlock, "mode=0755,size=1m", true); err != nil {
		return err
	}
	return c.populate(sysBlock)
}

// populate writes c's entries into the empty directory dir.
func (c confinement) populate(dir string) error {
	for name, target := range c.links {
		if err := os.Symlink(target, filepath.Join(dir, name)); err != nil {
			return fmt.Errorf("hiding other disks: %w", err)
		}
	}
	for name, ents := range c.mirrors {
		d := filepath.Join(dir, name)
		if err := os.Mkdir(d, 0o755); err != nil {
			return fmt.Errorf("hiding other partitions: %w", err)
		}
		for e, target := range ents {
			if err := os.Symlink(target, filepath.Join(d, e)); err != nil {
				return fmt.Errorf("hiding other partitions: %w", err)
			}
		}
	}
	for rel, ents := range c.startless {
		d := filepath.Join(dir, rel)
		if err := os.Mkdir(d, 0o755); err != nil {
			return fmt.Errorf("hiding a /boot volume from os-prober: %w", err)
		}
		for e, target := range ents {
			if err := os.Symlink(target, filepath.Join(d, e)); err != nil {
				return fmt.Errorf("hiding a /boot volume from os-prober: %w", err)
			}
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
