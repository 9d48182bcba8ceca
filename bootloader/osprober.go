package bootloader

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/provisioner/provisioner/internal/run"
)

// ConfinedProberArg is the first argument that makes the provisioner binary act as the
// confined prober child.
const ConfinedProberArg = "__os-prober-confined"

// proberFormat versions the JSON the child prints. Self may name another build of the
// provisioner than the parent's (an upgraded binary on disk, a wrapper), so the parent
// refuses any other version rather than misreading it.
const proberFormat = 1

// Bounds on what is read from programs whose output depends on untrusted images: far
// above anything real (a handful of lines per root), low enough that a runaway grub.cfg
// cannot make us hold or encode unbounded data.
const (
	maxProberOutput = 1 << 20 // bytes of one os-prober or linux-boot-prober output parsed
	maxProberLines  = 4096    // lines of one such output parsed
	maxChildReport  = 8 << 20 // bytes of the child's JSON the parent accepts
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

// OSProber finds kernels with os-prober and linux-boot-prober, confined to given disks.
//
// os-prober looks at every partition of the machine (/sys/block/*/*[0-9]) and every LVM
// volume, mounting each through grub-mount: run as it is, it would read other
// processes' disks and loop devices. Probe therefore runs it in a child process with a
// mount namespace of its own, in which /sys/block lists only the given disks and the
// devices stacked on them (see ConfinedProberMain).
type OSProber struct {
	Run run.Runner
	// Self is the argv prefix that re-executes this program, e.g. {"/proc/self/exe"} —
	// Probe appends ConfinedProberArg and the disks.
	Self []string
}

// OSProberAvailable reports whether os-prober and linux-boot-prober are installed.
func OSProberAvailable() bool {
	for _, p := range []string{"os-prober", "linux-boot-prober"} {
		if _, err := run.LookPath(p); err != nil {
			return false
		}
	}
	return true
}

// Probe returns the kernel found on each Linux root partition of the given whole disks
// (e.g. "/dev/loop3"), keyed by the canonical device path of the root (filepath.EvalSymlinks
// applied, so "/dev/mapper/vg-root" and "/dev/os/root" both become "/dev/dm-3"). A root on
// which linux-boot-prober found no kernel, or failed, has no entry: the caller decides
// whether to fall back (ProbeRoot). Kernel paths are as seen from the root's filesystem
// tree, also when /boot is a separate volume, and the newest kernel is chosen as
// ProbeRoot chooses it.
//
// ctx bounds the whole run, which takes seconds per partition (os-prober mounts each one
// through FUSE). When it expires the child is killed; programs os-prober had started may
// then outlive it for a while, confined to its namespace, until they finish on their own.
func (p OSProber) Probe(ctx context.Context, disks []string) (map[string]Kernel, error) {
	if p.Run == nil || len(p.Self) == 0 {
		return nil, errors.New("os-prober: OSProber needs a Runner and the argv that re-executes this program")
	}
	if len(disks) == 0 {
		return map[string]Kernel{}, nil
	}
	for _, d := range disks {
		// The child takes its arguments as device paths; a relative one would depend on
		// its working directory and one starting with "-" looks like a flag in logs.
		if !filepath.IsAbs(d) {
			return nil, fmt.Errorf("os-prober: disk %q is not an absolute device path", d)
		}
	}
	argv := slices.Concat(p.Self, []string{ConfinedProberArg}, disks)
	res, err := p.Run.Run(ctx, run.Cmd{Argv: argv, MountNamespace: true})
	if err != nil {
		return nil, fmt.Errorf("os-prober on %s: %w", strings.Join(disks, " "), err)
	}
	rep, err := decodeReport(res.Stdout)
	if err != nil {
		return nil, fmt.Errorf("os-prober on %s: %w", strings.Join(disks, " "), err)
	}
	kernels := map[string]Kernel{}
	for _, root := range rep.Roots {
		k, ok := pickKernel(root.Entries)
		if !ok {
			continue
		}
		k.OSName = cleanName(root.Name)
		if k.OSName == "" {
			k.OSName = "Linux"
		}
		dev, err := filepath.EvalSymlinks(root.Partition)
		if err != nil {
			return nil, fmt.Errorf("os-prober on %s: root %s: %w", strings.Join(disks, " "), root.Partition, err)
		}
		if _, dup := kernels[dev]; !dup { // os-prober lists a device once; keep the first if not
			kernels[dev] = k
		}
	}
	return kernels, nil
}

// ConfinedProberMain is the child's body: called by cmd/provisioner (and test binaries'
// TestMain) when os.Args[1] == ConfinedProberArg, with args = os.Args[2:] (the disks).
// It must run in a mount namespace of its own (OSProber.Probe starts it so) and refuses
// to run in its parent's: it mounts over /sys/block, which in the machine's namespace
// would hide every disk from everyone. It makes / recursively private so that nothing it
// mounts propagates out, mounts a tmpfs over /sys/block holding symlinks to the given
// disks and the devices stacked on them (dm, md: /sys/block/X/slaves), a tmpfs over
// /var/lib/os-prober (os-prober's state and FUSE mount point stay private, and parallel
// runs do not share them) and a /proc/partitions listing only those devices (for
// blkid). Then it runs os-prober and, for each Linux partition on those disks,
// linux-boot-prober through r, and writes one JSON document to stdout. A failing
// linux-boot-prober is recorded for its partition; the others are still probed.
//
// It has no time limit of its own: ctx, and the parent's ctx that kills this process,
// bound it.
func ConfinedProberMain(ctx context.Context, r run.Runner, disks []string, stdout io.Writer) error {
	if len(disks) == 0 {
		return errors.New("confined os-prober: no disks given")
	}
	if err := checkOwnMountNamespace(); err != nil {
		return err
	}
	// A new namespace still shares propagation with the machine's mounts: without this,
	// the tmpfs over /sys/block would appear in every namespace.
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("confined os-prober: making / private in its mount namespace: %w", err)
	}
	names := make([]string, 0, len(disks))
	for _, d := range disks {
		n, err := wholeDiskName(d)
		if err != nil {
			return fmt.Errorf("confined os-prober: %w", err)
		}
		names = append(names, n)
	}
	c, err := newConfinement(sysBlockDir, names)
	if err != nil {
		return fmt.Errorf("confined os-prober: %w", err)
	}
	if err := c.hide(sysBlockDir); err != nil {
		return fmt.Errorf("confined os-prober: %w", err)
	}
	env, err := privateState(c)
	if err != nil {
		return fmt.Errorf("confined os-prober: %w", err)
	}
	// The namespace goes with us, but a grub-mount daemon left by a killed os-prober
	// would keep it alive: detaching its mount point lets it exit.
	defer unix.Unmount(proberState, unix.MNT_DETACH)

	rep, err := probeConfined(ctx, r, env, func(part string) bool {
		n, err := blockName(part)
		return err == nil && c.names[n]
	})
	if err != nil {
		return fmt.Errorf("confined os-prober: %w", err)
	}
	if err := json.NewEncoder(stdout).Encode(rep); err != nil {
		return fmt.Errorf("confined os-prober: writing the report: %w", err)
	}
	return nil
}

// checkOwnMountNamespace fails unless this process's mount namespace differs from its
// parent's. Making / private succeeds in any namespace, so it proves nothing, and PID 1
// is not a reference either (a container's PID 1 may sit in another namespace than the
// container's processes). The parent is: Probe starts us in a new namespace, and a
// person starting us by hand from a shell shares the shell's.
func checkOwnMountNamespace() error {
	own, err := os.Readlink("/proc/self/ns/mnt")
	if err != nil {
		return fmt.Errorf("confined os-prober: reading its mount namespace: %w", err)
	}
	parentLink := fmt.Sprintf("/proc/%d/ns/mnt", os.Getppid())
	parent, err := os.Readlink(parentLink)
	if err != nil {
		return fmt.Errorf("confined os-prober: reading its parent's mount namespace: %w", err)
	}
	if own == parent {
		return fmt.Errorf("confined os-prober: refusing to run in its parent's mount namespace (%s): it would hide the machine's disks; it is started by OSProber.Probe", own)
	}
	return nil
}

// probeConfined runs os-prober, then linux-boot-prober on each Linux partition that
// allowed accepts. allowed is the last line of defence should os-prober list a device
// outside the namespace's /sys/block (it asks lvs for LVM volumes, for one).
func probeConfined(ctx context.Context, r run.Runner, env []string, allowed func(partition string) bool) (proberReport, error) {
	rep := proberReport{Format: proberFormat, Roots: []proberRoot{}}
	res, err := r.Run(ctx, run.Cmd{Argv: []string{"os-prober"}, Env: env})
	if err != nil {
		return rep, err
	}
	for _, found := range parseOSProber(res.Stdout) {
		if found.Type != "linux" || !allowed(found.Partition) {
			continue
		}
		root := proberRoot{Partition: found.Partition, Name: found.Long}
		res, err := r.Run(ctx, run.Cmd{Argv: []string{"linux-boot-prober", found.Partition}, Env: env})
		switch {
		case err != nil && ctx.Err() != nil:
			// Out of time: the remaining partitions would fail the same way.
			return rep, fmt.Errorf("linux-boot-prober %s: %w", found.Partition, err)
		case err != nil:
			root.Error = err.Error()
		default:
			root.Entries = parseBootProber(res.Stdout)
			if len(root.Entries) == 0 {
				root.Error = "linux-boot-prober found no kernel"
			}
		}
		rep.Roots = append(rep.Roots, root)
	}
	return rep, nil
}

// proberReport is the JSON the child prints. It is private to this package: only a
// provisioner binary parses it, and Format says which version wrote it.
type proberReport struct {
	Format int          `json:"format"`
	Roots  []proberRoot `json:"roots"`
}

// proberRoot is one Linux root os-prober reported.
type proberRoot struct {
	Partition string      `json:"partition"` // as os-prober printed it
	Name      string      `json:"name"`      // os-prober's long name, raw
	Entries   []bootEntry `json:"entries,omitempty"`
	Error     string      `json:"error,omitempty"` // why it has no entries
}

// bootEntry is one line of linux-boot-prober, paths already as seen from the root.
type bootEntry struct {
	Root   string `json:"root"`
	Boot   string `json:"boot"`
	Kernel string `json:"kernel"`
	Initrd string `json:"initrd,omitempty"`
}

// decodeReport parses the child's output, refusing another format version, trailing
// data and oversized output.
func decodeReport(b []byte) (proberReport, error) {
	var rep proberReport
	if len(b) > maxChildReport {
		return rep, fmt.Errorf("the prober's report is %d bytes, more than %d", len(b), maxChildReport)
	}
	if len(bytes.TrimSpace(b)) == 0 {
		return rep, errors.New("the prober printed no report")
	}
	// The version first, so that a report of another version fails on that and not on
	// whatever field changed.
	var v struct {
		Format int `json:"format"`
	}
	if err := json.Unmarshal(b, &v); err != nil {
		return rep, fmt.Errorf("reading the prober's report: %w", err)
	}
	if v.Format != proberFormat {
		return rep, fmt.Errorf("the prober's report has format %d, this provisioner reads %d: is Self the same build?", v.Format, proberFormat)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&rep); err != nil {
		return rep, fmt.Errorf("reading the prober's report: %w", err)
	}
	if dec.More() {
		return rep, errors.New("reading the prober's report: data after the report")
	}
	return rep, nil
}

// osEntry is one line of os-prober: "/dev/sda2:Debian GNU/Linux 12 (bookworm):Debian:linux".
type osEntry struct {
	Partition, Long, Short, Type string
}

// parseOSProber parses os-prober's output, skipping lines that do not have its four
// fields. The long name may itself contain colons (it is the image's PRETTY_NAME), so
// the partition is cut at the first colon and type and short name at the last ones.
func parseOSProber(out []byte) []osEntry {
	var list []osEntry
	seen := map[string]bool{}
	for _, line := range lines(out) {
		part, rest, ok := strings.Cut(line, ":")
		if !ok || !strings.HasPrefix(part, "/") {
			continue
		}
		i := strings.LastIndexByte(rest, ':')
		if i < 0 {
			continue
		}
		rest, typ := rest[:i], rest[i+1:]
		j := strings.LastIndexByte(rest, ':')
		if j < 0 {
			continue
		}
		e := osEntry{Partition: part, Long: rest[:j], Short: rest[j+1:], Type: strings.TrimSpace(typ)}
		if seen[e.Partition] {
			continue
		}
		seen[e.Partition] = true
		list = append(list, e)
	}
	return list
}

// parseBootProber parses linux-boot-prober's "root:boot:label:kernel:initrd:params" lines.
// The params, which we never use (we render our own command line), are the last field
// and may contain colons; the label is stripped of colons by os-prober. Kernel and initrd
// become paths as seen from the root: os-prober 1.81 already prefixes "/boot" when /boot
// is a separate volume (boot != root), older probes give the path on that volume
// ("/vmlinuz-X"), which is prefixed here. Of several initrds (microcode first) the last
// is the real one. Lines without an absolute kernel path, or with control characters
// in a path, are skipped: they come from an image's grub.cfg and end up in ours.
func parseBootProber(out []byte) []bootEntry {
	var list []bootEntry
	for _, line := range lines(out) {
		f := strings.SplitN(line, ":", 6)
		if len(f) != 6 || !strings.HasPrefix(f[0], "/") {
			continue
		}
		e := bootEntry{Root: f[0], Boot: f[1]}
		if e.Boot == "" {
			e.Boot = e.Root
		}
		separateBoot := e.Boot != e.Root
		e.Kernel = rootPath(strings.TrimSpace(f[3]), separateBoot)
		if e.Kernel == "" {
			continue
		}
		if initrds := strings.Fields(f[4]); len(initrds) > 0 {
			e.Initrd = rootPath(initrds[len(initrds)-1], separateBoot)
			if e.Initrd == "" {
				continue
			}
		}
		list = append(list, e)
	}
	return list
}

// rootPath cleans p and makes it relative to the image root when it is relative to a
// separate /boot volume; "" when p is unusable.
func rootPath(p string, separateBoot bool) string {
	if !strings.HasPrefix(p, "/") || strings.IndexFunc(p, func(r rune) bool { return r < 0x20 || r == 0x7f }) >= 0 {
		return ""
	}
	p = path.Clean(p)
	if separateBoot && p != "/boot" && !strings.HasPrefix(p, "/boot/") {
		p = "/boot" + p
	}
	return p
}

// lines splits a program's output into its non-empty lines, within the size bounds.
func lines(out []byte) []string {
	if len(out) > maxProberOutput {
		out = out[:maxProberOutput]
	}
	var list []string
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(nil, maxProberOutput)
	for sc.Scan() && len(list) < maxProberLines {
		if l := strings.TrimRight(sc.Text(), "\r"); strings.TrimSpace(l) != "" {
			list = append(list, l)
		}
	}
	return list
}

// pickKernel chooses among one root's entries as ProbeRoot chooses among files: the
// newest version (`sort -V`) of the vmlinuz-/vmlinux- kernels that are not *.old, *.bak
// or rescue, those only when there is nothing else, and kernels with other names (a
// plain /vmlinuz) last; the full path breaks ties. Its initrd is the one ProbeRoot would
// pick among those reported for that kernel, else the first reported.
func pickKernel(entries []bootEntry) (Kernel, bool) {
	rank := func(base string) int {
		switch {
		case !strings.HasPrefix(base, "vmlinuz-") && !strings.HasPrefix(base, "vmlinux-"):
			return 2
		case strings.HasSuffix(base, ".old") || strings.HasSuffix(base, ".bak") || strings.Contains(base, "rescue"):
			return 1
		}
		return 0
	}
	version := func(base string) string {
		if rank(base) < 2 {
			return base[len("vmlinuz-"):]
		}
		return base
	}
	best := -1
	for i, e := range entries {
		if best < 0 {
			best = i
			continue
		}
		b, c := path.Base(entries[best].Kernel), path.Base(e.Kernel)
		if rc, rb := rank(c), rank(b); rc != rb {
			if rc < rb {
				best = i
			}
			continue
		}
		if v := verCmp(version(c), version(b)); v != 0 {
			if v > 0 {
				best = i
			}
			continue
		}
		if e.Kernel > entries[best].Kernel {
			best = i
		}
	}
	if best < 0 {
		return Kernel{}, false
	}
	kpath := entries[best].Kernel
	base := path.Base(kpath)
	k := Kernel{Path: kpath, Version: version(base)}
	var initrds []string
	for _, e := range entries {
		if e.Kernel == kpath && e.Initrd != "" && !slices.Contains(initrds, e.Initrd) {
			initrds = append(initrds, e.Initrd)
		}
	}
	dir := path.Dir(kpath)
	for _, n := range []string{"initrd.img-" + k.Version, "initramfs-" + k.Version + ".img", "initrd-" + k.Version + ".img", "initrd-" + k.Version} {
		if slices.Contains(initrds, path.Join(dir, n)) {
			k.Initrd = path.Join(dir, n)
			break
		}
	}
	if k.Initrd == "" && len(initrds) > 0 {
		k.Initrd = initrds[0]
	}
	return k, true
}

// confinement is what the child's /sys/block keeps.
type confinement struct {
	links map[string]string // /sys/block entry name -> absolute sysfs directory it points to
	names map[string]bool   // kernel names of those devices and of their partitions
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
	if err := unix.Mount("provisioner-sysblock", sysBlock, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "mode=0755,size=1m"); err != nil {
		return fmt.Errorf("mounting a tmpfs over %s: %w", sysBlock, err)
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
	if err := unix.Mount("provisioner-os-prober", proberState, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "mode=0755,size=4m"); err != nil {
		return nil, fmt.Errorf("mounting a tmpfs over %s: %w", proberState, err)
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
	if err := unix.Mount(filtered, procPartitions, "", unix.MS_BIND, ""); err != nil {
		return nil, fmt.Errorf("hiding other disks from blkid: bind-mounting over %s: %w", procPartitions, err)
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
