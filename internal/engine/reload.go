package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"

	"github.com/provisioner/provisioner/bootloader"
	"github.com/provisioner/provisioner/deploy"
	"github.com/provisioner/provisioner/partition"
)

// DefaultTries is the number of trial boots a reload arms unless told otherwise.
const DefaultTries = 3

// ReloadOptions are the inputs of a reload of one image on a deployed node.
type ReloadOptions struct {
	// Image is a grub_id, an os_id (the image's name in the spec) or an image_name, as
	// switch-default takes.
	Image string
	// URL is the new image's source; Checksum, Format, ImageUUID and ImageName as an
	// image of the spec has them (ImageName "" keeps the recorded one).
	URL, Checksum, Format, ImageUUID, ImageName string
	// Tries is the number of trial boots (0: DefaultTries); NoTrial makes the image the
	// default at once.
	Tries   int
	NoTrial bool
	// BootDir says where the boot files are: the running node, --device or --boot-dir.
	// Reload opens it for writing.
	BootDir BootDirOptions
	// Prober overrides the kernel prober the deploy used ("": the recorded one).
	Prober string
	// Boot configures the kernel probe (Self, ProberTimeout); its Prober and BootInfoPath
	// are not used.
	Boot BootOptions
	// Fetcher fetches the image (nil: defaults).
	Fetcher *deploy.Fetcher
	// ImageRun says where the run reports and works.
	ImageRun
	// InRamdisk says the reload runs in the deploy ramdisk booted from the copy kept on
	// the node (reload --via-ramdisk): no image is booted, and a single-image node's
	// default moves to the ramdisk's entry while its only root is rewritten, and its trial
	// falls back to the ramdisk.
	InRamdisk bool
	// RamdiskAfter are the kernel words the ramdisk's entry gets once the image is
	// written, just before the commit arms its trial: the words of the reload are then
	// gone, so that a trial that falls back to the ramdisk does not reload again. nil
	// leaves the entry as it is.
	RamdiskAfter []string
}

// ReloadResult says what a reload did.
type ReloadResult struct {
	// Element is the image's boot entry as committed.
	Element bootloader.Element
	// From and To are the image's versions before and after.
	From, To bootloader.ImageVersion
	// Tries is the number of trial boots armed, 0 when the image became the default.
	Tries int
	// MovedDefault is the entry the default moved to before the reload wrote anything
	// (nil when it did not move); with a trial it stays the default until confirm.
	MovedDefault *bootloader.Element
	// Recreated lists the filesystems made anew (mount point and UUID); Kept those the
	// image mounts that kept their data.
	Recreated []partition.KeptMount
	Kept      []partition.KeptMount
	// BootInfo is boot-info.json as written.
	BootInfo *bootloader.BootInfo
}

// Reload replaces one image of a deployed node by a new one, in place: it re-creates only
// the image's own filesystems (same UUIDs and labels; keep_data and shared volumes are
// mounted as they are), streams and extracts the image with the deploy's code, finds its
// kernel, and commits the menu, boot-info.json, the plan record, the history and the trial
// in one bootloader commit. Everything that can be checked is checked before the first
// write: the record, the image's entry, that none of the filesystems to re-create is
// mounted, the image's source, format and checksum. See the README for the crash safety.
func Reload(ctx context.Context, o ReloadOptions) (res *ReloadResult, err error) {
	r := &reload{o: o, events: emitter(o.Events), log: o.Log}
	if r.log == nil {
		r.log = slog.New(slog.DiscardHandler)
	}
	st := &runState{}
	defer func() { err = st.interrupted(ctx, err) }()
	r.events = st.track(r.events)
	r.st = st
	if err := r.check(); err != nil {
		return nil, err
	}
	r.o.BootDir.Writable = true
	err = withBootDir(ctx, r.o.BootDir, func(bd *BootDir) error {
		r.bd = bd
		if err := r.prepare(ctx); err != nil {
			return err
		}
		res, err = r.run(ctx)
		return err
	})
	if err != nil {
		return nil, err
	}
	return res, nil
}

// reload is one run of Reload.
type reload struct {
	o      ReloadOptions
	events emitter
	log    *slog.Logger
	st     *runState
	bd     *BootDir
	rec    *partition.Record
	bi     *bootloader.BootInfo
	el     bootloader.Element
	plan   *partition.ReloadPlan
	devs   partition.Devices
	d      *deploy.Deployer
	probe  *kernelSet
	moveTo *int
}

// check vets the options alone.
func (r *reload) check() error {
	if err := checkSource(r.o); err != nil {
		return err
	}
	switch {
	case r.o.NoTrial && r.o.Tries != 0:
		return Usagef("reload: --tries and --no-trial exclude each other")
	case r.o.Tries < 0 || r.o.Tries > bootloader.MaxTrialTries:
		return Usagef("reload: --tries %d: want 1 to %d", r.o.Tries, bootloader.MaxTrialTries)
	}
	if !r.o.NoTrial && r.o.Tries == 0 {
		r.o.Tries = DefaultTries
	}
	if r.o.NoTrial {
		r.o.Tries = 0
	}
	return nil
}

// checkSource refuses a reload without an image or a source, for every kind of reload.
func checkSource(o ReloadOptions) error {
	switch {
	case o.Image == "":
		return Usagef("reload: no image named")
	case o.URL == "":
		return Usagef("reload: --url is required")
	}
	return nil
}

// prepare does everything that writes nothing: reads the record and the boot info, plans,
// finds the devices, refuses mounted filesystems, and opens the new image.
func (r *reload) prepare(ctx context.Context) error {
	if err := r.readPlan(); err != nil {
		return err
	}
	if err := r.chooseFallback(ctx); err != nil {
		return err
	}
	var err error
	if r.devs, err = r.devices(ctx); err != nil {
		return err
	}
	if err := r.refuseMounted(); err != nil {
		return err
	}
	return r.preflight(ctx)
}

// readPlan reads the record and the boot info, finds the image and plans its reload with
// the new source.
func (r *reload) readPlan() error {
	if err := r.readBoot(); err != nil {
		return err
	}
	return r.planReload()
}

// planReload plans the reload of the image found, with the new source.
func (r *reload) planReload() error {
	var err error
	if r.plan, err = partition.PlanReload(r.rec.Layout, r.el.OSID); err != nil {
		return Environmentf("reload: %w", err)
	}
	r.applySource()
	return nil
}

// readBoot reads the plan record and the boot info, and finds the image.
func (r *reload) readBoot() error {
	r.events.emit(Event{Phase: PhasePlan, Message: "reading the plan record and the boot files in " + r.bd.Source})
	rec, err := bootloader.ReadRecord(r.bd.Path)
	if errors.Is(err, partition.ErrNoRecord) {
		return Environmentf("reload: %w", err)
	}
	if err != nil {
		return err
	}
	r.rec = rec
	if r.bi, err = bootloader.ReadBootInfo(r.bd.Path + "/" + bootloader.BootInfoPath); err != nil {
		return err
	}
	el, err := r.bi.Find(r.o.Image)
	if err != nil {
		return Usagef("reload: %w", err)
	}
	r.el = *el
	return nil
}

// preflight sets up the deploy code and opens the new image: its source, format and
// checksum, before anything is written.
func (r *reload) preflight(ctx context.Context) error {
	r.newDeployer()
	if err := r.d.CheckNodeTools([]*partition.Image{r.plan.Image}); err != nil {
		return Environmentf("reload: %w", err)
	}
	r.events.emit(Event{Message: fmt.Sprintf("opening %s and checking its format and checksum", r.o.URL)})
	if err := r.d.Preflight(ctx, r.plan.Image); err != nil {
		return err
	}
	return ctx.Err()
}

// applySource puts the new image's source into the plan's image.
func (r *reload) applySource() {
	im := r.plan.Image
	im.URL, im.Checksum, im.Format, im.ImageUUID = r.o.URL, r.o.Checksum, r.o.Format, r.o.ImageUUID
	if r.o.ImageName != "" {
		im.ImageName = r.o.ImageName
	}
}

// chooseFallback picks the entry that boots while the image is rewritten, and refuses a
// trial that grub could not count or could not roll back.
func (r *reload) chooseFallback(ctx context.Context) error {
	st, err := bootloader.List(r.bd.Path, r.bootedRoot(ctx))
	if err != nil {
		return err
	}
	var others []bootloader.Element
	for _, e := range r.bi.Elements {
		if e.GrubID != r.el.GrubID && e.MenuentryID != "" && e.State == "" {
			others = append(others, e)
		}
	}
	switch {
	case st.Booted != nil && *st.Booted != r.el.GrubID:
		id := *st.Booted
		r.moveTo = &id
	case len(others) > 0:
		id := others[0].GrubID
		if st.Saved != r.el.GrubID {
			id = st.Saved
		}
		r.moveTo = &id
	case r.o.InRamdisk:
		if _, err := bootloader.ReadRamdisk(r.bd.Path); err != nil {
			return Environmentf("reload: %s is the only image of this node and the deploy ramdisk is not kept on it (%w): nothing could boot while its root is rewritten", r.el.OSID, err)
		}
		id := bootloader.RamdiskGrubID
		r.moveTo = &id
	case r.bd.Live:
		return Usagef("reload: %s is the only bootable image of this node: nothing else could boot while its root is rewritten (reload it with --via-ramdisk)", r.el.OSID)
	}
	if r.o.Tries > 0 && r.moveTo == nil {
		return Usagef("reload: %s is the disk's only image: a trial has nothing to fall back to; use --no-trial", r.el.OSID)
	}
	if r.o.Tries > 0 && r.bi.MultibootPartition == "" {
		return Usagef("reload: the boot files are in an image's /boot, which grub may not be able to write (LVM or RAID); a trial needs the multiboot partition: use --no-trial")
	}
	return nil
}

// bootedRoot is the running system's root UUID on the node, "" offline.
func (r *reload) bootedRoot(ctx context.Context) string {
	if !r.bd.Live {
		return ""
	}
	return BootedRootUUID(ctx, r.o.BootDir.Env)
}

// devices maps the recorded disks to block devices (see layoutDevices).
func (r *reload) devices(ctx context.Context) (partition.Devices, error) {
	return layoutDevices(ctx, r.bd, r.o.BootDir, r.rec.Layout, "reload")
}

// layoutDevices maps the disks of l to block devices: offline, the disk (or the loop
// device of the image file) given with --device, which holds the boot files bd; on the
// node, each disk found by its spec id and locked as a deploy locks it. op names the
// command in errors.
func layoutDevices(ctx context.Context, bd *BootDir, o BootDirOptions, l *partition.Layout, op string) (partition.Devices, error) {
	devs := partition.Devices{}
	if o.Device != "" {
		if len(l.Disks) != 1 {
			return nil, Usagef("%s: the node's plan has %d disks; offline, --device gives one: %s it on the node", op, len(l.Disks), op)
		}
		devs[l.Disks[0].ID.Value] = bd.Disk
		return devs, nil
	}
	for _, d := range l.Disks {
		p, err := o.Env.Sys.Resolve(ctx, d.ID.Type, d.ID.Value)
		if err != nil {
			return nil, Environmentf("%s: disk %s: %w", op, d.ID, err)
		}
		p = canonicalDev(p)
		if p != canonicalDev(bd.Disk) {
			if err := bd.lock(ctx, o, p, "disk "+d.ID.String()); err != nil {
				return nil, err
			}
		}
		devs[d.ID.Value] = p
	}
	return devs, nil
}

// refuseMounted refuses the reload when a filesystem it would re-create is mounted (the
// root the node runs from, say): mkfs would pull it from under its users.
func (r *reload) refuseMounted() error {
	byUUID := map[string]string{}
	for _, t := range partition.FilesystemDevices(r.plan.Layout, r.devs) {
		byUUID[t.FS.UUID] = t.Dev
	}
	for _, fs := range r.plan.Recreate {
		dev := byUUID[fs.UUID]
		at, err := r.o.BootDir.Env.Sys.MountedAt(dev)
		if err != nil {
			return Environmentf("reload: image %s: its filesystem %s: %w", r.el.OSID, fs.UUID, err)
		}
		if at != "" {
			return Environmentf("reload: image %s: its filesystem %s (%s, %s in the image) is mounted at %s; it would be re-created: unmount it, or reload the running root with --via-ramdisk (one reboot) or --live (no reboot, same kernel)", r.el.OSID, dev, fs.UUID, fs.Mount, at)
		}
	}
	return nil
}

// newDeployer sets up the deploy code for the one image.
func (r *reload) newDeployer() {
	r.d, r.probe = r.o.deployer(r.o.BootDir.Env, r.o.Fetcher, r.events)
}

// describe lists mounts for messages: "/ (UUID)".
func describe(ms []partition.KeptMount) string {
	parts := make([]string, len(ms))
	for i, m := range ms {
		parts[i] = m.Path + " (" + m.UUID + ")"
		if m.Reason != "" {
			parts[i] += ", " + m.Reason
		}
	}
	return strings.Join(parts, "; ")
}
