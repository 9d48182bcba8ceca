package initramfs

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/provisioner/provisioner/internal/deb"
	"github.com/provisioner/provisioner/internal/elfdeps"
	"github.com/provisioner/provisioner/internal/run"
)

// Options configure Build. The zero value builds the generic amd64 flavour into out/.
type Options struct {
	Flavour  string   // "amd64" (default) or "cloud-amd64"
	OutDir   string   // where vmlinuz and the archive are written; "" = "out"
	CacheDir string   // downloaded packages and unpacked kernels; "" = DefaultCacheDir()
	GoCmd    []string // how to run the go tool, e.g. {"./scripts/go"}; nil = {"go"}
	// Run executes the go tool, apt, depmod and busybox --list; nil = run.Exec{}.
	Run run.Runner
	Log *slog.Logger // progress; nil = discard
}

// Result describes what Build wrote.
type Result struct {
	Kernel        string // path of the kernel image, OutDir/vmlinuz
	Initramfs     string // path of the archive, OutDir/initramfs.cpio.zst or .gz
	Checksums     string // path of SHA256SUMS listing both, OutDir/SHA256SUMS
	KernelVersion string // e.g. "6.1.0-56-cloud-amd64"
	Compression   string // "zstd" or "gzip"
	Size          int64  // bytes of the compressed archive
	Records       int    // cpio records in the archive
}

// MaxSize is the largest compressed archive Build accepts: a ramdisk lives in the RAM of
// the machine it deploys, and network boot firmware (iPXE over HTTP, PXE over TFTP)
// gets slow with big files.
const MaxSize = 60 << 20

// Where Build puts its own programs in the ramdisk, and what u-root's init runs.
const (
	// provisionerPkg is the provisioner's main package, built with go build and
	// provisionerTags.
	provisionerPkg = "github.com/provisioner/provisioner/cmd/provisioner"
	// provisionerTags leave the FleetLock server's commands out of the ramdisk's
	// provisioner, and with them etcd's client and gRPC (about 12 MB): no node runs the
	// server, and a deploy copies this binary into the image as the node tools.
	provisionerTags = "nofleetlockserver"
	// initPkg is u-root's init: it mounts /proc, /sys, /dev..., loads the modules of
	// /lib/modules-load.d, runs /bin/uinit with the words of /etc/uinit.flags, then a
	// shell. initramfs/tools.go keeps its packages in go.mod.
	initPkg = "github.com/u-root/u-root/cmds/core/init"
)

// DefaultCacheDir returns $XDG_CACHE_HOME/provisioner-ramdisk or
// $HOME/.cache/provisioner-ramdisk (fallback os.TempDir()/provisioner-ramdisk): a
// per-user cache, so kernel packages are fetched and unpacked once per machine.
func DefaultCacheDir() string {
	if d, err := os.UserCacheDir(); err == nil {
		return filepath.Join(d, "provisioner-ramdisk")
	}
	return filepath.Join(os.TempDir(), "provisioner-ramdisk")
}

// withDefaults fills in the defaults and checks the flavour.
func (o Options) withDefaults() (Options, flavour, error) {
	if o.Flavour == "" {
		o.Flavour = "amd64"
	}
	fl, ok := flavours[o.Flavour]
	if !ok {
		names := make([]string, 0, len(flavours))
		for n := range flavours {
			names = append(names, n)
		}
		slices.Sort(names)
		return o, fl, fmt.Errorf("initramfs: unknown kernel flavour %q (known: %s)", o.Flavour, strings.Join(names, ", "))
	}
	if o.OutDir == "" {
		o.OutDir = "out"
	}
	if o.CacheDir == "" {
		o.CacheDir = DefaultCacheDir()
	}
	if len(o.GoCmd) == 0 {
		o.GoCmd = []string{"go"}
	}
	if o.Run == nil {
		o.Run = run.Exec{}
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	return o, fl, nil
}

// Build writes the deploy ramdisk into o.OutDir: the kernel of the flavour as vmlinuz,
// and a newc cpio archive (zstd when the kernel can unpack it, else gzip) holding
// u-root's init as /init, the provisioner as /bin/provisioner started through
// /bin/uinit, busybox, the host tools the provisioner runs with their libraries, and
// the kernel modules it needs with their dependencies. The same inputs give the same
// bytes: records sorted, owners and mtimes zero.
//
// It checks the host tools before downloading anything, so a missing one fails at once
// (ErrMissingTool, naming the Debian packages). The kernel and busybox come from apt
// (apt-get download; nothing is installed) and are cached in o.CacheDir.
func Build(ctx context.Context, o Options) (*Result, error) {
	o, fl, err := o.withDefaults()
	if err != nil {
		return nil, err
	}
	start := time.Now()
	tools, err := findHostTools(hostTools, hostPaths, toolDirs)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(o.CacheDir, 0o755); err != nil {
		return nil, fmt.Errorf("initramfs: cache: %w", err)
	}
	work, err := os.MkdirTemp("", "mkramdisk-")
	if err != nil {
		return nil, fmt.Errorf("initramfs: %w", err)
	}
	defer os.RemoveAll(work)

	// On an early return the deferred cancel stops the Go builds and the deferred wait
	// lets them end before work is removed.
	ctx, cancel := context.WithCancel(ctx)
	progs := startGoBuilds(ctx, o, work)
	defer progs.wait()
	defer cancel()

	in, err := gatherInputs(ctx, o, fl, work)
	if err != nil {
		return nil, err
	}
	if err := progs.wait(); err != nil {
		return nil, err
	}
	in.contents.init, in.contents.provisioner, in.contents.tools = progs.init, progs.provisioner, tools
	tr := newTree()
	if err := assemble(tr, newHostAdder(tr, &elfdeps.Resolver{Dirs: elfdeps.DefaultLibDirs}), in.contents); err != nil {
		return nil, err
	}
	res, err := writeOutputs(o, tr, in.kernel, in.comp)
	if err != nil {
		return res, err
	}
	o.Log.Info("ramdisk built", "kernel", res.Kernel, "initramfs", res.Initramfs, "took", time.Since(start).Round(time.Millisecond))
	return res, nil
}

// goBuilds are u-root's init and the provisioner, built in the background while the
// rest of the ramdisk's inputs are prepared: they take seconds warm, a minute cold.
type goBuilds struct {
	init, provisioner string // where they are written
	wg                sync.WaitGroup
	err               error
}

// startGoBuilds starts building init and the provisioner into work; ctx stops them.
func startGoBuilds(ctx context.Context, o Options, work string) *goBuilds {
	g := &goBuilds{init: filepath.Join(work, "init"), provisioner: filepath.Join(work, "provisioner")}
	g.wg.Add(1)
	go func() {
		defer g.wg.Done()
		t := time.Now()
		if g.err = goBuild(ctx, o, initPkg, g.init); g.err == nil {
			g.err = goBuild(ctx, o, provisionerPkg, g.provisioner, "-tags", provisionerTags)
		}
		o.Log.Info("built init and provisioner", "took", time.Since(t).Round(time.Millisecond))
	}()
	return g
}

// wait waits for the builds to end and returns their error.
func (g *goBuilds) wait() error {
	g.wg.Wait()
	return g.err
}

// inputs are the ramdisk's inputs other than the Go programs and the host tools.
type inputs struct {
	kernel   *kernel
	comp     string   // the archive's compression, one the kernel unpacks
	contents contents // without init, provisioner and tools
}

// gatherInputs prepares the kernel of the flavour and its modules, and busybox with
// its applets, in work, and picks the compression.
func gatherInputs(ctx context.Context, o Options, fl flavour, work string) (*inputs, error) {
	a := &deb.Apt{Run: o.Run, Dir: o.CacheDir, MayUpdate: os.Geteuid() == 0}
	t := time.Now()
	k, err := prepareKernel(ctx, a, o.Run, o.Flavour, fl, o.Log)
	if err != nil {
		return nil, err
	}
	o.Log.Info("kernel ready", "version", k.Version, "took", time.Since(t).Round(time.Millisecond))
	busybox, applets, err := prepareBusybox(ctx, a, o.Run, work)
	if err != nil {
		return nil, err
	}
	choice, err := chooseModules(k, fl)
	if err != nil {
		return nil, err
	}
	o.Log.Info("modules", "load", len(choice.load), "files", len(choice.files),
		"built-in", strings.Join(choice.builtin, " "), "absent", strings.Join(choice.absent, " "))
	modTree, err := stageModules(ctx, o.Run, k, choice.files, filepath.Join(work, "modules"))
	if err != nil {
		return nil, err
	}
	config, err := os.ReadFile(k.Config)
	if err != nil {
		return nil, fmt.Errorf("initramfs: %w", err)
	}
	comp, err := compressionFor(config)
	if err != nil {
		return nil, err
	}
	return &inputs{kernel: k, comp: comp, contents: contents{
		busybox: busybox, applets: applets, modTree: modTree, kernelVersion: k.Version, load: choice.load,
	}}, nil
}

// prepareBusybox fetches the busybox package, writes its binary into work and lists
// its applets.
func prepareBusybox(ctx context.Context, a *deb.Apt, r run.Runner, work string) (string, []string, error) {
	debs, err := a.Fetch(ctx, busyboxPkg)
	if err != nil {
		return "", nil, err
	}
	busybox := filepath.Join(work, "busybox")
	if err := deb.ExtractFile(ctx, debs[0], "bin/busybox", busybox, 0o755); err != nil {
		return "", nil, err
	}
	applets, err := listApplets(ctx, r, busybox)
	if err != nil {
		return "", nil, err
	}
	return busybox, applets, nil
}

// writeOutputs writes the archive of t and the kernel k into o.OutDir. An archive over
// MaxSize is written, and returned with an error.
func writeOutputs(o Options, t *tree, k *kernel, comp string) (*Result, error) {
	if err := os.MkdirAll(o.OutDir, 0o755); err != nil {
		return nil, fmt.Errorf("initramfs: %w", err)
	}
	res := &Result{
		Kernel:        filepath.Join(o.OutDir, "vmlinuz"),
		Initramfs:     filepath.Join(o.OutDir, "initramfs.cpio."+extension(comp)),
		KernelVersion: k.Version,
		Compression:   comp,
	}
	start := time.Now()
	var err error
	if res.Records, res.Size, err = writeArchive(t, res.Initramfs, comp); err != nil {
		return nil, err
	}
	o.Log.Info("archive written", "path", res.Initramfs, "bytes", res.Size, "records", res.Records,
		"took", time.Since(start).Round(time.Millisecond))
	// A file of the other compression would be a stale ramdisk someone might boot.
	for _, c := range []string{compZstd, compGzip} {
		if c != comp {
			os.Remove(filepath.Join(o.OutDir, "initramfs.cpio."+extension(c)))
		}
	}
	if err := atomicCopy(k.Vmlinuz, res.Kernel); err != nil {
		return nil, err
	}
	if err := WriteChecksums(o.OutDir, res.Kernel, res.Initramfs); err != nil {
		return nil, err
	}
	res.Checksums = filepath.Join(o.OutDir, ChecksumsName)
	if res.Size > MaxSize {
		return res, fmt.Errorf("initramfs: %s is %.1f MiB, over the %d MiB limit", res.Initramfs, float64(res.Size)/(1<<20), MaxSize>>20)
	}
	return res, nil
}

// extension is the file name extension of a compression.
func extension(comp string) string {
	if comp == compZstd {
		return "zst"
	}
	return "gz"
}

// goBuild builds pkg into out: static (CGO_ENABLED=0), for the ramdisk's amd64, with
// -trimpath so the bytes do not depend on where the module lives, and without symbol
// tables (-s -w: panics still print file:line from pclntab) to keep the ramdisk small;
// flags are go build's further flags (such as -tags).
func goBuild(ctx context.Context, o Options, pkg, out string, flags ...string) error {
	argv := slices.Concat(o.GoCmd, []string{"build", "-trimpath", "-ldflags=-s -w"}, flags, []string{"-o", out, pkg})
	env := []string{"CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64"}
	if _, err := o.Run.Run(ctx, run.Cmd{Argv: argv, Env: env}); err != nil {
		return fmt.Errorf("initramfs: building %s: %w", pkg, err)
	}
	return nil
}

// chooseModules reads the kernel's module index and decides what the ramdisk ships.
func chooseModules(k *kernel, fl flavour) (*moduleChoice, error) {
	dep, err := os.Open(filepath.Join(k.modDir(), "modules.dep"))
	if err != nil {
		return nil, fmt.Errorf("initramfs: %w", err)
	}
	defer dep.Close()
	builtin, err := os.Open(filepath.Join(k.modDir(), "modules.builtin"))
	if err != nil {
		return nil, fmt.Errorf("initramfs: %w", err)
	}
	defer builtin.Close()
	ix, err := parseModIndex(dep, builtin)
	if err != nil {
		return nil, fmt.Errorf("initramfs: kernel %s: %w", k.Version, err)
	}
	return selectModules(ix, wantedModules, fl.hardware)
}

// writeArchive writes the compressed archive to a temporary file next to dst and
// renames it into place, so a reader never sees half an archive.
func writeArchive(t *tree, dst, comp string) (records int, size int64, err error) {
	f, err := os.CreateTemp(filepath.Dir(dst), ".initramfs-*.tmp")
	if err != nil {
		return 0, 0, fmt.Errorf("initramfs: %w", err)
	}
	defer os.Remove(f.Name()) // fails harmlessly once renamed
	zw, err := compressor(f, comp)
	if err != nil {
		f.Close()
		return 0, 0, err
	}
	records, err = t.write(zw)
	if err == nil {
		err = zw.Close()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return 0, 0, fmt.Errorf("initramfs: writing %s: %w", dst, err)
	}
	if err := finish(f.Name(), dst); err != nil {
		return 0, 0, err
	}
	st, err := os.Stat(dst)
	if err != nil {
		return 0, 0, fmt.Errorf("initramfs: %w", err)
	}
	return records, st.Size(), nil
}

// atomicCopy copies the file src to dst through a temporary file and a rename.
func atomicCopy(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("initramfs: %w", err)
	}
	defer in.Close()
	f, err := os.CreateTemp(filepath.Dir(dst), ".vmlinuz-*.tmp")
	if err != nil {
		return fmt.Errorf("initramfs: %w", err)
	}
	defer os.Remove(f.Name())
	_, err = io.Copy(f, in)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("initramfs: writing %s: %w", dst, err)
	}
	return finish(f.Name(), dst)
}

// finish makes the temporary file tmp readable by all (CreateTemp makes 0600, and QEMU
// or a TFTP server may run as another user) and renames it to dst.
func finish(tmp, dst string) error {
	if err := os.Chmod(tmp, 0o644); err != nil {
		return fmt.Errorf("initramfs: %w", err)
	}
	if err := os.Rename(tmp, dst); err != nil {
		return fmt.Errorf("initramfs: %w", err)
	}
	return nil
}
