package engine

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"time"

	"github.com/provisioner/provisioner/bootloader"
	"github.com/provisioner/provisioner/deploy"
	"github.com/provisioner/provisioner/partition"
	"github.com/provisioner/provisioner/schema"
	"golang.org/x/sys/unix"
)

// DeployOptions are the inputs of the deploy command besides the spec.
type DeployOptions struct {
	PartitionOptions
	// Fetcher fetches images (nil: defaults).
	Fetcher *deploy.Fetcher
	// TTY draws progress as a redrawn line; otherwise progress goes to Log.
	TTY bool
	Log *slog.Logger
	// TmpDir holds the private mount roots ("": the system's temporary directory).
	TmpDir string
	// ProgressInterval is the period of progress log lines (0: 5 s).
	ProgressInterval time.Duration
	// Boot configures the bootloader step.
	Boot BootOptions
	// PreserveOnError keeps what a failed clean deploy wrote; by default its partition
	// tables are erased so the machine cannot boot a half-written OS.
	PreserveOnError bool
	// NodeToolsBinary is the provisioner program installed into images with node_tools
	// ("": the running one); it must be statically linked.
	NodeToolsBinary string
	// ImagesPerDisk bounds how many images deploy at once onto one disk (0:
	// DefaultImagesPerDisk); images sharing a filesystem never deploy at once.
	ImagesPerDisk int
}

// DeployResult is what a deploy produced.
type DeployResult struct {
	Layout *partition.Layout
	// BootInfo is the boot-info.json written (nil on a dry run, or with no OS image).
	BootInfo *bootloader.BootInfo
	// Durations say how long each phase took (nil on a dry run).
	Durations *Durations
}

// Deploy does everything Partition does, deploys every image into its root, and ends
// with the bootloader: grub installed once, the menu, boot-info.json and grubenv.
// Images whose filesystems live on different disks are deployed concurrently; up to
// ImagesPerDisk images share a disk at once, and images that share a filesystem (a
// shared volume) take turns.
func Deploy(ctx context.Context, spec *schema.Spec, opts DeployOptions) (*DeployResult, error) {
	if opts.Out == nil {
		opts.Out = io.Discard
	}
	log := opts.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	fetcher := opts.Fetcher
	if fetcher == nil {
		fetcher = &deploy.Fetcher{Log: opts.Log}
	}
	kernels := newKernelSet()
	d := &deploy.Deployer{
		Fetcher: fetcher, Decompressor: deploy.Decompressor{Run: opts.Env.Run},
		Run: opts.Env.Run, Sys: opts.Env.Sys, Out: opts.Out, TTY: opts.TTY, Log: opts.Log,
		TmpDir: opts.TmpDir, ProgressInterval: opts.ProgressInterval, Inspect: kernels.inspect,
		NodeToolsBinary: opts.NodeToolsBinary,
	}
	opts.check = func(ctx context.Context, l *partition.Layout) error {
		if err := checkProber(l, opts.Boot); err != nil {
			return err
		}
		// A program the images cannot run is found before anything is written.
		if err := d.CheckNodeTools(l.Images); err != nil {
			return Environmentf("%w", err)
		}
		if err := checkOutputPath(opts.Boot.BootInfoPath); err != nil || opts.DryRun {
			return err
		}
		// Checksum files are fetched before the first write: a wrong checksum URL, or
		// an interruption while it is fetched, leaves the disks as they were.
		if err := d.ResolveDigests(ctx, l.Images); err != nil {
			return err
		}
		return checkRamdiskPlan(ctx, fetcher, spec, l, opts.Boot.GrubLib)
	}
	if opts.DryRun {
		layout, err := withDisks(ctx, spec, opts.PartitionOptions, nil)
		if err == nil {
			fmt.Fprintf(opts.Out, "then %d image(s) would be deployed:\n", len(layout.Images))
			for _, im := range layout.Images {
				fmt.Fprintf(opts.Out, "  %s from %s into %s (%d mounts), fstab %s\n", im.Name, im.URL, im.Target, len(im.Mounts), fstabNote(im))
			}
			bootDryRun(opts.Out, layout, opts.Boot)
			if spec.KeepsRamdisk() {
				fmt.Fprintf(opts.Out, "then the deploy ramdisk from %s would be kept on the multiboot partition, with a menu entry of its own\n", spec.Ramdisk.URL)
			}
		}
		return &DeployResult{Layout: layout}, err
	}
	res := &DeployResult{}
	clock := newPhaseClock(nil)
	sink := opts.Events != nil
	opts.Events = clock.wrap(opts.Events)
	var boot *BootDurations
	popts := opts.PartitionOptions
	popts.WipeOnError = !opts.PreserveOnError
	layout, err := withDisks(ctx, spec, popts, func(ctx context.Context, layout *partition.Layout, devs partition.Devices, files map[string]bool, events emitter) error {
		events.emit(Event{Phase: PhaseImages, Message: fmt.Sprintf("deploying %d image(s)", len(layout.Images))})
		if sink {
			d.OnProgress = func(image string, done, total int64) {
				events.emit(Event{Phase: PhaseImages, Image: image, Done: done, Total: total})
			}
		}
		if err := deployAll(ctx, layout, devs, d, events, clock.image, opts.ImagesPerDisk); err != nil {
			return err
		}
		events.emit(Event{Phase: PhaseBootloader, Message: "installing grub, writing boot-info.json"})
		b := &bootStep{spec: spec, l: layout, devs: devs, files: files, env: opts.Env, opts: opts.Boot, tmpDir: opts.TmpDir, log: log, events: events, digest: d.Digest, fetcher: fetcher}
		bi, err := b.run(ctx, kernels)
		res.BootInfo = bi
		if bi != nil {
			boot = &b.took
		}
		return err
	})
	res.Layout = layout
	if err != nil {
		return nil, err
	}
	res.Durations = clock.durations(boot)
	return res, nil
}

// checkOutputPath makes sure, before anything is written, that boot-info.json's output copy
// can be written at p ("" for none): its directory exists and is writable, and p is a
// regular file or missing. Found only at the end, an unwritable path would fail a deploy
// whose disks are complete, and a clean deploy's failure erases them.
func checkOutputPath(p string) error {
	if p == "" {
		return nil
	}
	if fi, err := os.Stat(p); err == nil && !fi.Mode().IsRegular() {
		return Environmentf("--boot-info %s: not a regular file", p)
	}
	dir := filepath.Dir(p)
	fi, err := os.Stat(dir)
	if err != nil {
		return Environmentf("--boot-info %s: %w", p, err)
	}
	if !fi.IsDir() {
		return Environmentf("--boot-info %s: %s is not a directory", p, dir)
	}
	// access(2) also answers EROFS for a read-only filesystem, which permission bits do not
	// show (and which root's privileges do not overcome).
	if err := unix.Access(dir, unix.W_OK|unix.X_OK); err != nil {
		return Environmentf("--boot-info %s: cannot create files in %s: %w", p, dir, err)
	}
	return nil
}

// bootDryRun says what the bootloader step would do.
func bootDryRun(w io.Writer, l *partition.Layout, o BootOptions) {
	roots := rootImages(l)
	if len(roots) == 0 {
		fmt.Fprintln(w, "no image has target /: no bootloader would be installed")
		return
	}
	where := "image " + roots[0].Name + "'s /boot"
	if l.Multiboot != nil {
		where = "the multiboot partition (" + l.Multiboot.UUID + ")"
	}
	fmt.Fprintf(w, "then grub (%s) would be installed once, its directory and boot-info.json on %s, with %d menu entries (default %s)", l.BootMode, where, len(roots), l.BootImage)
	if o.BootInfoPath != "" {
		fmt.Fprintf(w, "; boot-info.json also to %s", o.BootInfoPath)
	}
	fmt.Fprintln(w)
}

func fstabNote(im *partition.Image) string {
	if im.Target != "/" {
		return "not written (utility image)"
	}
	if im.NodeTools {
		return "written to /etc/fstab, node tools installed"
	}
	return "written to /etc/fstab"
}

// imageDisks lists, sorted, the disks holding the filesystems an image mounts: a
// partition's disk, an md array's members' disks, a logical volume's pvs' disks.
func imageDisks(l *partition.Layout, im *partition.Image) []string {
	want := map[string]bool{}
	for _, m := range im.Mounts {
		want[m.FSUUID] = true
	}
	set := map[string]bool{}
	for _, d := range l.Disks {
		for _, p := range d.Partitions {
			if p.FS != nil && want[p.FS.UUID] {
				set[d.ID.Value] = true
			}
		}
	}
	for _, r := range l.RAIDs {
		if r.FS != nil && want[r.FS.UUID] {
			for _, m := range r.Members {
				set[m.Disk] = true
			}
		}
	}
	for _, vg := range l.VGs {
		for _, lv := range vg.LVs {
			if lv.FS != nil && want[lv.FS.UUID] {
				for _, pv := range vg.PVs {
					set[pv.Disk] = true
				}
			}
		}
	}
	out := make([]string, 0, len(set))
	for name := range set {
		out = append(out, name)
	}
	sort.Strings(out)
	return out
}
