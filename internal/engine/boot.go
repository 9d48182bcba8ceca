package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/provisioner/provisioner/bootloader"
	"github.com/provisioner/provisioner/deploy"
	"github.com/provisioner/provisioner/internal/confine"
	"github.com/provisioner/provisioner/internal/disk"
	"github.com/provisioner/provisioner/internal/run"
	"github.com/provisioner/provisioner/partition"
	"github.com/provisioner/provisioner/schema"
	"golang.org/x/sync/errgroup"
)

// Kernel discovery methods (--prober).
const (
	// ProberAuto uses os-prober and linux-boot-prober when installed, the built-in prober
	// for any root they do not report, and the built-in prober alone otherwise.
	ProberAuto = "auto"
	// ProberOSProber requires os-prober and linux-boot-prober to find every root's kernel.
	ProberOSProber = "os-prober"
	// ProberBuiltin reads each root's /boot and /etc/os-release in Go.
	ProberBuiltin = "builtin"
)

// DefaultBootInfoPath is where Bareon's conductor looked for boot-info.json.
const DefaultBootInfoPath = "/tmp/boot-info.json"

// nvramLabel is the description of the UEFI boot entry we add.
const nvramLabel = "provisioner"

// BootOptions configure the bootloader step that ends a deploy.
type BootOptions struct {
	// BootInfoPath also receives boot-info.json ("": only the boot partition gets it).
	BootInfoPath string
	// Prober is ProberAuto ("" too), ProberOSProber or ProberBuiltin.
	Prober string
	// Self is the argv prefix that re-executes this program as the confined os-prober
	// child (nil: /proc/self/exe).
	Self []string
	// GrubLib is where grub's platform files live ("": /usr/lib/grub).
	GrubLib string
	// ProberTimeout bounds the os-prober run (0: DefaultProberTimeout).
	ProberTimeout time.Duration
	// KernelCmdline returns the running kernel's command line, whose base words the kept
	// ramdisk boots with (nil: /proc/cmdline's content).
	KernelCmdline func() (string, error)
}

// DefaultProberTimeout bounds os-prober and linux-boot-prober. They take seconds per root
// (about 30 s for two roots under QEMU's emulation), but they are shell scripts that read
// files of the images, and a FIFO an image planted where one of them reads (boot/grub/grub.cfg)
// blocks them for ever; past the bound, auto falls back to the built-in prober.
const DefaultProberTimeout = 5 * time.Minute

// kernelSet collects what the built-in prober finds in each root image while the deploy
// still has it mounted.
type kernelSet struct {
	mu    sync.Mutex
	found map[string]bootloader.Kernel
	errs  map[string]error
}

func newKernelSet() *kernelSet {
	return &kernelSet{found: map[string]bootloader.Kernel{}, errs: map[string]error{}}
}

// inspect is the deploy.Deployer Inspect hook.
func (k *kernelSet) inspect(_ context.Context, im *partition.Image, root string) error {
	if im.Target != "/" {
		return nil
	}
	kern, err := bootloader.ProbeRoot(root)
	if errors.Is(err, confine.ErrUnsafe) {
		// A FIFO or device where the image's OS name belongs is hostile, whichever prober
		// is used in the end.
		return &classified{deploy.ErrImage, fmt.Errorf("image %s: %w", im.Name, err)}
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if err != nil {
		k.errs[im.Name] = err
	} else {
		k.found[im.Name] = kern
	}
	return nil
}

// bootStep installs grub and writes the boot files once every image is deployed.
type bootStep struct {
	spec   *schema.Spec
	l      *partition.Layout
	devs   partition.Devices
	files  map[string]bool // disks that are image files (attached to loop devices)
	env    partition.Env
	opts   BootOptions
	tmpDir string
	log    *slog.Logger
	events emitter
	byUUID map[string]partition.FSDevice
	// digest returns the verified checksum of an image by name ("" when none).
	digest func(name string) string
	// fetcher fetches the ramdisk the spec keeps on the node.
	fetcher *deploy.Fetcher
	// took records how long run's steps took.
	took BootDurations
}

// rootImages returns the images with target "/", in spec order: one menu entry each.
func rootImages(l *partition.Layout) []*partition.Image {
	var out []*partition.Image
	for _, im := range l.Images {
		if im.Target == "/" {
			out = append(out, im)
		}
	}
	return out
}

// run renders and installs the bootloader and returns the boot info it wrote.
//
// Its steps overlap where they touch different things. Kernel discovery (one confined
// os-prober per root) only reads the roots and their /boot volumes; grub's BIOS install
// writes grub's i386-pc directory, then the disks' boot code and BIOS boot partitions;
// the UEFI install writes grub's x86_64-efi directory and the ESP. So discovery runs
// alongside both installs, and the installs alongside each other, the first failure
// cancelling the others. Discovery runs first, alone, only when grub's directory is on
// a volume it reads (a single image's root or /boot): the installs would otherwise
// write a filesystem os-prober has mounted.
//
// The boot files are then committed by bootloader.Commit in its crash-safe order
// (grub.cfg first, the default last). The boot code is installed before grub.cfg, which
// changes nothing a power cut can leave on a deploy: the images are already rewritten,
// so the disk boots no complete system until the commit ends, whichever of the two is
// written first; each install syncs grub's modules to disk before it writes the boot
// code that loads them, so the two never mismatch; and the default, which says the
// deploy is complete, is still written last. Reload and update install no boot code.
func (b *bootStep) run(ctx context.Context, builtin *kernelSet) (bi *bootloader.BootInfo, err error) {
	roots := rootImages(b.l)
	if len(roots) == 0 {
		b.events.emit(Event{Message: "no image has target /: no bootloader installed"})
		return nil, nil
	}
	b.byUUID = map[string]partition.FSDevice{}
	for _, t := range partition.FilesystemDevices(b.l, b.devs) {
		b.byUUID[t.FS.UUID] = t
	}
	var kernels map[string]bootloader.Kernel
	discover := func(ctx context.Context) error {
		start := time.Now()
		var err error
		kernels, err = b.kernels(ctx, roots, builtin)
		b.took.KernelDiscovery = time.Since(start)
		return err
	}
	alone := b.bootFSProbed(roots)
	if alone {
		if err := discover(ctx); err != nil {
			return nil, err
		}
	}
	loc, release, err := b.mountBootFS(ctx, roots)
	if err != nil {
		return nil, err
	}
	defer func() {
		if rerr := release(context.WithoutCancel(ctx)); rerr != nil && err == nil {
			err = rerr
		}
	}()
	dir, err := openGrubDir(loc)
	if err != nil {
		return nil, err
	}
	defer dir.Close()

	g, gctx := errgroup.WithContext(ctx)
	if !alone {
		g.Go(func() error { return discover(gctx) })
	}
	b.installBootCode(gctx, g, loc)
	if err := g.Wait(); err != nil {
		return nil, err
	}
	b.took.Concurrent = !alone

	start := time.Now()
	defer func() { b.took.Commit = time.Since(start) }()
	cfg, err := b.menu(roots, kernels)
	if err != nil {
		return nil, err
	}
	if b.spec != nil && b.spec.KeepsRamdisk() {
		// Before grub.cfg, which sources the ramdisk's entry: a deploy cut in between
		// leaves a menu without it, never one naming files that are not there.
		if err := b.keepRamdisk(ctx, loc); err != nil {
			return nil, err
		}
		cfg.Ramdisk = true
	}
	b.events.emit(Event{Message: fmt.Sprintf("writing grub's menu (%s) with %d menu entries, default %s", b.l.BootMode, len(cfg.Entries), cfg.Entries[cfg.Default].ID)})
	bi = b.bootInfo(roots, cfg.Entries, kernels, cfg.Default, loc)
	if err := b.commit(ctx, dir, cfg, bi); err != nil {
		return nil, err
	}
	if err := b.copyBootInfo(bi); err != nil {
		return nil, err
	}
	b.nvram(ctx)
	return bi, nil
}

// bootFSProbed reports whether grub's directory lives on a volume kernel discovery reads:
// with no multiboot partition, it is in the first root image's /boot volume or root.
func (b *bootStep) bootFSProbed(roots []*partition.Image) bool {
	return b.l.Multiboot == nil && len(roots) > 0
}

// openGrubDir opens the boot directory at loc and creates grub's directory in it. On a
// single-image deploy grub's directory is in the image's /boot, which the image filled:
// grub-bios-setup reads the core image back from there and follows whatever it finds, so
// before any install the directory must hold nothing but directories and regular files.
func openGrubDir(loc bootloader.Location) (*confine.Dir, error) {
	dir, err := confine.Open(loc.Dir)
	if err != nil {
		return nil, fmt.Errorf("bootloader: %w", err)
	}
	if err := dir.MkdirAll(loc.GrubDir, 0o755); err != nil {
		dir.Close()
		return nil, treeErr(fmt.Errorf("creating grub's directory: %w", err))
	}
	if err := dir.CheckTree(loc.GrubDir); err != nil {
		dir.Close()
		return nil, treeErr(fmt.Errorf("grub's directory: %w", err))
	}
	return dir, nil
}

// menu builds the boot menu: one entry per root image, in spec order, the boot image's
// the default.
func (b *bootStep) menu(roots []*partition.Image, kernels map[string]bootloader.Kernel) (bootloader.Config, error) {
	entries, err := bootloader.Entries(b.l, kernels, b.spec.KernelParams())
	if err != nil {
		return bootloader.Config{}, fmt.Errorf("boot menu: %w", err)
	}
	def := 0
	for i, im := range roots {
		if im.Name == b.l.BootImage {
			def = i
		}
	}
	return bootloader.Config{Timeout: b.spec.GrubTimeout(), Entries: entries, Default: def, Serial: true}, nil
}

// commit writes the boot files (grub.cfg, boot-info.json, the history record, grubenv)
// into the boot directory dir, grub's boot code being installed already (run).
func (b *bootStep) commit(ctx context.Context, dir *confine.Dir, cfg bootloader.Config, bi *bootloader.BootInfo) error {
	state, err := bootloader.DeployState(dir, cfg, bi)
	if err != nil {
		return err
	}
	if state.Record, err = b.record(); err != nil {
		return err
	}
	return treeErr(bootloader.Commit(ctx, dir, state, bootloader.CommitOptions{}))
}

// installBootCode starts, in g, grub's installs for the plan's boot mode: BIOS boot code
// on every disk, the removable UEFI loader on the ESP. The two write different places
// (run), so they run side by side; the BIOS install builds one core image and writes
// it onto the disks one after another.
func (b *bootStep) installBootCode(ctx context.Context, g *errgroup.Group, loc bootloader.Location) {
	in := bootloader.Installer{Run: b.env.Run, GrubLib: b.opts.GrubLib}
	start := time.Now()
	var mu sync.Mutex
	done := func(d *time.Duration) {
		mu.Lock()
		defer mu.Unlock()
		*d = time.Since(start)
		b.took.GrubInstall = max(b.took.GrubInstall, *d)
	}
	if b.l.BootMode == schema.BootBIOS || b.l.BootMode == schema.BootBoth {
		g.Go(func() error {
			b.events.emit(Event{Message: fmt.Sprintf("installing grub (BIOS) on %d disk(s)", len(b.l.Disks))})
			defer done(&b.took.GrubBIOS)
			tmp, err := os.MkdirTemp(b.tmpDir, "provisioner-bios-")
			if err != nil {
				return fmt.Errorf("installing grub (BIOS): %w", err)
			}
			defer os.RemoveAll(tmp)
			return in.InstallBIOS(ctx, loc, b.diskPaths(), tmp)
		})
	}
	if b.l.BootMode != schema.BootUEFI && b.l.BootMode != schema.BootBoth {
		return
	}
	g.Go(func() error {
		b.events.emit(Event{Message: "installing grub (UEFI) on the EFI system partition"})
		defer done(&b.took.GrubUEFI)
		esp, ok := b.byUUID[uuidOf(b.l.ESP)]
		if !ok {
			return fmt.Errorf("installing grub (UEFI): the plan has no EFI system partition")
		}
		tmp, err := os.MkdirTemp(b.tmpDir, "provisioner-efi-")
		if err != nil {
			return fmt.Errorf("installing grub (UEFI): %w", err)
		}
		defer os.RemoveAll(tmp)
		return in.InstallEFI(ctx, loc, esp.Dev, tmp)
	})
}

// copyBootInfo writes boot-info.json also to --boot-info: the copy is for the conductor, and
// is written once the disk is complete.
func (b *bootStep) copyBootInfo(bi *bootloader.BootInfo) error {
	if b.opts.BootInfoPath == "" {
		return nil
	}
	data, err := bi.Encode()
	if err != nil {
		return err
	}
	return bootloader.WriteFileAtomic(b.opts.BootInfoPath, data, 0o644, nil)
}

// diskPaths returns the device of every disk of the plan, in plan order.
func (b *bootStep) diskPaths() []string {
	var disks []string
	for _, d := range b.l.Disks {
		disks = append(disks, b.devs[d.ID.Value])
	}
	return disks
}

func uuidOf(fs *partition.Filesystem) string {
	if fs == nil {
		return ""
	}
	return fs.UUID
}

// checkProber rejects, before anything is written, a prober that cannot serve the plan:
// an unknown one, or os-prober alone for a root on an md array. Debian 12's os-prober
// lists partitions and LVM volumes, never a whole md array (measured in QEMU), so it
// would fail the deploy only once every image had been written.
func checkProber(l *partition.Layout, o BootOptions) error {
	switch o.Prober {
	case "", ProberAuto, ProberBuiltin:
		return nil
	case ProberOSProber:
	default:
		return Usagef("--prober %q: want auto, os-prober or builtin", o.Prober)
	}
	md := map[string]bool{}
	for _, r := range l.RAIDs {
		if r.FS != nil {
			md[r.FS.UUID] = true
		}
	}
	for _, im := range rootImages(l) {
		if root := im.MountAt("/"); root != nil && md[root.FSUUID] {
			return Usagef("--prober os-prober: image %s has its root on the md array %s, which os-prober never looks at: use --prober auto (it reads such a root itself) or builtin", im.Name, root.Device)
		}
	}
	return nil
}

// kernels finds each root image's kernel with the chosen prober.
func (b *bootStep) kernels(ctx context.Context, roots []*partition.Image, builtin *kernelSet) (map[string]bootloader.Kernel, error) {
	mode := b.opts.Prober
	if mode == "" {
		mode = ProberAuto
	}
	var found map[string]bootloader.Kernel
	var failed map[string]error
	switch mode {
	case ProberBuiltin:
	case ProberAuto, ProberOSProber:
		if !bootloader.OSProberAvailable() {
			if mode == ProberOSProber {
				return nil, Environmentf("--prober os-prober: os-prober or linux-boot-prober is not installed")
			}
			b.log.Info("os-prober is not installed: using the built-in kernel prober")
			break
		}
		found, failed = b.osProber(ctx, roots)
		if ctx.Err() != nil {
			// Cancelled from outside, or by a failed grub install beside it.
			return nil, context.Cause(ctx)
		}
	default:
		return nil, Usagef("--prober %q: want auto, os-prober or builtin", mode)
	}
	out := map[string]bootloader.Kernel{}
	for _, im := range roots {
		if k, ok := found[im.Name]; ok {
			out[im.Name] = k
			b.log.Info("kernel found by os-prober", "image", im.Name, "kernel", k.Path, "initrd", k.Initrd, "os", k.OSName)
			continue
		}
		if err := failed[im.Name]; err != nil {
			if mode == ProberOSProber {
				return nil, fmt.Errorf("os-prober: %w", err)
			}
			b.log.Warn("os-prober failed: using the built-in kernel prober", "image", im.Name, "err", err)
		} else if found != nil && mode == ProberOSProber {
			return nil, &classified{deploy.ErrImage, fmt.Errorf("image %s: os-prober found no Linux with a kernel on its root %s", im.Name, b.byUUID[im.RootUUID].Dev)}
		}
		builtin.mu.Lock()
		k, ok := builtin.found[im.Name]
		perr := builtin.errs[im.Name]
		builtin.mu.Unlock()
		if !ok {
			if perr == nil {
				perr = errors.New("the image was not inspected")
			}
			return nil, &classified{deploy.ErrImage, fmt.Errorf("image %s cannot boot: %w", im.Name, perr)}
		}
		out[im.Name] = k
		b.log.Info("kernel found", "image", im.Name, "kernel", k.Path, "initrd", k.Initrd, "os", k.OSName)
	}
	return out, nil
}

// osProber runs os-prober for the roots, one confined child per probe group
// (probeGroups) and the groups at once: each child sees only its roots and their /boot
// volumes, the runs share nothing, and one group's slow or failing run does not hold up
// or fail the others' results. It returns the kernels found, by image name, and each
// root's run failure; ProberTimeout bounds them all together.
func (b *bootStep) osProber(ctx context.Context, roots []*partition.Image) (map[string]bootloader.Kernel, map[string]error) {
	self := b.opts.Self
	if len(self) == 0 {
		self = []string{"/proc/self/exe"}
	}
	limit := b.opts.ProberTimeout
	if limit <= 0 {
		limit = DefaultProberTimeout
	}
	pctx, cancel := context.WithTimeoutCause(ctx, limit, fmt.Errorf("os-prober ran longer than %v", limit))
	defer cancel()
	p := bootloader.OSProber{Run: b.env.Run, Self: self}
	var (
		mu     sync.Mutex
		wg     sync.WaitGroup
		found  = map[string]bootloader.Kernel{}
		failed = map[string]error{}
	)
	for _, group := range probeGroups(b.l, roots) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got, err := p.Probe(pctx, b.proberVolumes(group))
			if err != nil && ctx.Err() == nil && pctx.Err() != nil {
				err = fmt.Errorf("%w: %w", context.Cause(pctx), err)
			}
			mu.Lock()
			defer mu.Unlock()
			for _, im := range group {
				if err != nil {
					failed[im.Name] = err
				} else if k, ok := got[canonicalDev(b.byUUID[im.RootUUID].Dev)]; ok {
					found[im.Name] = k
				}
			}
		}()
	}
	wg.Wait()
	return found, failed
}

// probeGroups splits roots into the groups one os-prober run each probes: a root of its
// own, except that roots with a volume (root or /boot) in the same LVM volume group
// share a run. os-prober lists logical volumes with lvs, which shows every volume of a
// group it can see, so two runs would each probe all of them. A root on an md array gets
// no run: os-prober never looks at an array (checkProber), so the built-in prober reads it.
func probeGroups(l *partition.Layout, roots []*partition.Image) [][]*partition.Image {
	vgOf := map[string]string{} // filesystem UUID -> volume group
	for _, vg := range l.VGs {
		for _, lv := range vg.LVs {
			if lv.FS != nil {
				vgOf[lv.FS.UUID] = vg.Name
			}
		}
	}
	md := map[string]bool{}
	for _, r := range l.RAIDs {
		if r.FS != nil {
			md[r.FS.UUID] = true
		}
	}
	var groups [][]*partition.Image
	at := map[string]int{} // volume group -> index in groups
	for _, im := range roots {
		if md[im.RootUUID] {
			continue
		}
		vg := vgOf[im.RootUUID]
		if boot := im.MountAt("/boot"); vg == "" && boot != nil {
			vg = vgOf[boot.FSUUID]
		}
		if i, ok := at[vg]; ok && vg != "" {
			groups[i] = append(groups[i], im)
			continue
		}
		if vg != "" {
			at[vg] = len(groups)
		}
		groups = append(groups, []*partition.Image{im})
	}
	return groups
}

// proberVolumes are what os-prober is shown of the target disks: the roots of the images
// with target "/" and their separate /boot volumes. Everything else the plan holds (the
// multiboot partition, the ESP, BIOS boot, swap, shared data and utility-image volumes)
// can hold no OS root, and each volume os-prober looks at costs it a FUSE mount, seconds
// under emulation.
func (b *bootStep) proberVolumes(roots []*partition.Image) bootloader.ProberVolumes {
	var v bootloader.ProberVolumes
	for _, im := range roots {
		if t, ok := b.byUUID[im.RootUUID]; ok {
			v.Roots = append(v.Roots, t.Dev)
		}
		if boot := im.MountAt("/boot"); boot != nil {
			if t, ok := b.byUUID[boot.FSUUID]; ok {
				v.Boot = append(v.Boot, t.Dev)
			}
		}
	}
	return v
}

// canonicalDev resolves symlinks (/dev/vg/lv -> /dev/dm-3) so that devices named two
// ways compare equal.
func canonicalDev(p string) string {
	if r, err := filepath.EvalSymlinks(p); err == nil {
		return r
	}
	return p
}

// mountBootFS mounts the filesystem that receives grub's directory and the boot files:
// the multiboot partition, or, for a single OS image, the image's /boot volume or its
// root (then the files go to its /boot directory).
func (b *bootStep) mountBootFS(ctx context.Context, roots []*partition.Image) (bootloader.Location, func(context.Context) error, error) {
	mnt, err := os.MkdirTemp(b.tmpDir, "provisioner-boot-")
	if err != nil {
		return bootloader.Location{}, nil, fmt.Errorf("bootloader: %w", err)
	}
	var fs *partition.Filesystem
	var loc bootloader.Location
	if b.l.Multiboot != nil {
		fs = b.l.Multiboot
		loc = bootloader.Multiboot(mnt, fs.UUID)
	} else {
		im := roots[0]
		root, boot := im.MountAt("/"), im.MountAt("/boot")
		switch {
		case boot != nil:
			loc = bootloader.Location{Dir: mnt, GrubDir: "grub", Prefix: "/grub", FSUUID: boot.FSUUID}
			fs = b.byUUID[boot.FSUUID].FS
		case root != nil:
			loc = bootloader.Location{Dir: filepath.Join(mnt, "boot"), GrubDir: "grub", Prefix: "/boot/grub", FSUUID: root.FSUUID}
			fs = b.byUUID[root.FSUUID].FS
		}
	}
	if fs == nil {
		os.Remove(mnt)
		return loc, nil, fmt.Errorf("bootloader: no filesystem for grub's directory in the plan")
	}
	dev := b.byUUID[fs.UUID].Dev
	if err := disk.Mount(ctx, dev, mnt, fs.Type, ""); err != nil {
		os.Remove(mnt)
		return loc, nil, fmt.Errorf("bootloader: %w", err)
	}
	// A single image's boot directory is its /boot: a symlink there (boot -> /etc) would
	// send grub and the boot files to the host.
	rel, err := filepath.Rel(mnt, loc.Dir)
	if err == nil {
		_, err = confine.MakeDir(mnt, rel)
	}
	if err != nil {
		disk.Unmount(context.WithoutCancel(ctx), mnt)
		os.Remove(mnt)
		return loc, nil, treeErr(fmt.Errorf("bootloader: %w", err))
	}
	return loc, func(ctx context.Context) error {
		serr := disk.SyncFS(mnt)
		if err := disk.Unmount(ctx, mnt); err != nil {
			return err
		}
		os.Remove(mnt)
		return serr
	}, nil
}

// bootInfo builds boot-info.json from the menu.
func (b *bootStep) bootInfo(roots []*partition.Image, entries []bootloader.MenuEntry, kernels map[string]bootloader.Kernel, def int, loc bootloader.Location) *bootloader.BootInfo {
	bi := &bootloader.BootInfo{CurrentElement: def, MultibootPartition: uuidOf(b.l.Multiboot), GrubDir: filepath.ToSlash(loc.GrubDir)}
	for i, im := range roots {
		e := entries[i]
		fss := map[string]string{}
		for _, m := range im.Mounts {
			fss[m.Path] = m.FSUUID
		}
		k := kernels[im.Name]
		bi.Elements = append(bi.Elements, bootloader.Element{
			GrubID: i, ImageName: im.ImageName, OSID: im.Name, ImageUUID: im.ImageUUID,
			BootName: e.Title, RootUUID: im.RootUUID, MenuentryID: e.ID,
			Kernel: k.Path, Initrd: k.Initrd, Cmdline: e.Cmdline, Filesystems: fss, Digest: b.imageDigest(im.Name),
		})
	}
	return bi
}

// nvram adds a UEFI boot entry for the ESP's removable path when the machine has EFI
// variables and the first disk is a real disk (never for an image file: the NVRAM is
// this machine's, not the image's). The removable path boots without it, so any
// failure is only logged.
func (b *bootStep) nvram(ctx context.Context) {
	if b.l.ESP == nil || !b.env.Sys.EFIVars() {
		return
	}
	first := b.l.Disks[0]
	if b.files[first.ID.Value] {
		return
	}
	part := 0
	for _, p := range first.Partitions {
		if p.Role == partition.RoleESP {
			part = p.Number
		}
	}
	if part == 0 {
		return
	}
	// Replace our entry from an earlier deploy rather than piling up duplicates.
	if res, err := b.env.Run.Run(ctx, run.Cmd{Argv: []string{"efibootmgr"}}); err == nil {
		for _, num := range nvramEntries(string(res.Stdout), nvramLabel) {
			if _, err := b.env.Run.Run(ctx, run.Cmd{Argv: []string{"efibootmgr", "--quiet", "--bootnum", num, "--delete-bootnum"}}); err != nil {
				b.log.Warn("removing an old UEFI boot entry failed", "bootnum", num, "err", err)
			}
		}
	}
	argv := []string{"efibootmgr", "--quiet", "--create", "--disk", b.devs[first.ID.Value], "--part", fmt.Sprint(part),
		"--label", nvramLabel, "--loader", `\EFI\BOOT\BOOTX64.EFI`}
	if _, err := b.env.Run.Run(ctx, run.Cmd{Argv: argv}); err != nil {
		b.log.Warn("adding the UEFI boot entry failed; the disk still boots from its removable path", "err", err)
		return
	}
	b.log.Info("UEFI boot entry added", "label", nvramLabel)
}

// nvramEntries returns the boot numbers of efibootmgr's "Boot0004* label" lines whose
// description is label.
func nvramEntries(listing, label string) []string {
	var out []string
	for _, line := range strings.Split(listing, "\n") {
		rest, ok := strings.CutPrefix(line, "Boot")
		if !ok || len(rest) < 5 {
			continue
		}
		num, desc := rest[:4], strings.TrimLeft(rest[4:], "* ")
		if strings.Trim(num, "0123456789ABCDEFabcdef") != "" {
			continue
		}
		// Newer efibootmgr prints the device path after a tab.
		desc, _, _ = strings.Cut(desc, "\t")
		if strings.TrimSpace(desc) == label {
			out = append(out, num)
		}
	}
	sort.Strings(out)
	return out
}

// Summary prints boot-info for people: one line per entry, the default marked.
func Summary(w io.Writer, bi *bootloader.BootInfo) {
	if bi == nil {
		return
	}
	where := "the image's /boot"
	if bi.MultibootPartition != "" {
		where = "multiboot partition " + bi.MultibootPartition
	}
	fmt.Fprintf(w, "boot menu (%s):\n", where)
	for _, e := range bi.Elements {
		mark := " "
		if e.GrubID == bi.CurrentElement {
			mark = "*"
		}
		fmt.Fprintf(w, " %s %d  %-16s %s  root=%s  %s\n", mark, e.GrubID, e.OSID, e.BootName, e.RootUUID, e.Kernel)
	}
}

// treeErr marks a refusal of what a boot directory or image root holds (a symlink, device
// node or FIFO where the provisioner writes) as an image error: only an image, or a
// tampered disk, puts one there.
func treeErr(err error) error {
	if errors.Is(err, confine.ErrUnsafe) {
		return &classified{deploy.ErrImage, err}
	}
	return err
}

// imageDigest is the verified checksum of the image named name, "" when none.
func (b *bootStep) imageDigest(name string) string {
	if b.digest == nil {
		return ""
	}
	return b.digest(name)
}

// record is the deploy's record of its plan, committed beside boot-info.json so that the
// node can reload an image later: the spec as loaded, the layout as applied (after a
// verify policy adopted what the disks keep), the menu's settings, and each image's digest.
func (b *bootStep) record() (*partition.Record, error) {
	spec, err := json.Marshal(b.spec)
	if err != nil {
		return nil, fmt.Errorf("recording the plan: %w", err)
	}
	prober := b.opts.Prober
	if prober == "" {
		prober = ProberAuto
	}
	r := &partition.Record{
		Version: partition.RecordVersion, Spec: spec, Layout: b.l,
		KernelParams: b.spec.KernelParams(), GrubTimeout: b.spec.GrubTimeout(), Prober: prober,
		Images: map[string]partition.ImageRecord{},
	}
	now := time.Now().UTC()
	for _, im := range b.l.Images {
		r.Images[im.Name] = partition.ImageRecord{Digest: b.imageDigest(im.Name), Operation: "deploy", At: now}
	}
	return r, nil
}
