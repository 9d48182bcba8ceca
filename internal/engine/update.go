package engine

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/provisioner/provisioner/bootloader"
	"github.com/provisioner/provisioner/deploy"
	"github.com/provisioner/provisioner/internal/disk"
	"github.com/provisioner/provisioner/partition"
	"github.com/provisioner/provisioner/schema"
)

// UpdateOptions are the inputs of an update of a deployed node from a changed spec.
type UpdateOptions struct {
	// Against says where the node is: on the node itself, or offline (--device).
	Against AgainstOptions
	// Force applies images that are already deployed (no-ops) and downgrades.
	Force bool
	// Tries is the number of trial boots of a new default image (0: DefaultTries);
	// NoTrial makes it the default at once.
	Tries   int
	NoTrial bool
	// Confirm is asked with the break-down before anything is written; false cancels
	// (nil: go ahead).
	Confirm func(*partition.Breakdown) (bool, error)
	// Boot configures the kernel probe (Self, ProberTimeout; Prober "" is the recorded one).
	Boot BootOptions
	// ImageRun says where the run reports and works.
	ImageRun
}

// UpdateResult says what an update did.
type UpdateResult struct {
	// Breakdown is what the update does (or did), as plan --against prints it.
	Breakdown *partition.Breakdown
	// Applied is set once the changes are written; false for nothing to do or a
	// cancelled update.
	Applied   bool
	Cancelled bool
	// Trial is the image on trial after the update, "" for none; Tries its boots.
	Trial string
	Tries int
	// BootInfo is boot-info.json as written.
	BootInfo *bootloader.BootInfo
}

// Update applies a changed spec to a deployed node, writing only what changed: it breaks
// the change down as PlanAgainst does and stops there when there is nothing to do, when
// the change is refused, or when an image is a no-op or a downgrade and Force is not set
// (each naming the images); it asks Confirm; then it adds and grows volumes in place,
// reloads the updated images and deploys the added ones with the deploy's code, and
// commits the menu, boot-info.json, the plan record, the history record and grubenv once,
// at the end (the default last, a new default image on trial). Removed images' entries
// leave the menu; their volumes stay as they are.
func Update(ctx context.Context, spec *schema.Spec, o UpdateOptions) (*UpdateResult, error) {
	if o.NoTrial && o.Tries != 0 {
		return nil, Usagef("update: --tries and --no-trial exclude each other")
	}
	if o.Tries < 0 || o.Tries > bootloader.MaxTrialTries {
		return nil, Usagef("update: --tries %d: want 1 to %d", o.Tries, bootloader.MaxTrialTries)
	}
	if !o.NoTrial && o.Tries == 0 {
		o.Tries = DefaultTries
	}
	b, err := PlanAgainst(ctx, spec, o.Against)
	res := &UpdateResult{Breakdown: b}
	if err != nil || b.NothingToDo {
		return res, err
	}
	if !o.Force {
		if err := b.Unforced(); err != nil {
			return res, Environmentf("%w", err)
		}
	}
	if o.Confirm != nil {
		ok, err := o.Confirm(b)
		if err != nil || !ok {
			res.Cancelled = err == nil
			return res, err
		}
	}
	return res, apply(ctx, spec, o, b, res)
}

// apply opens the boot files for writing, breaks the change down again under the lock
// (the node must not have changed since the break-down shown) and writes it.
func apply(ctx context.Context, spec *schema.Spec, o UpdateOptions, shown *partition.Breakdown, res *UpdateResult) (err error) {
	ao := o.Against
	ao.BootDir.Writable = true
	targets, err := resolveTargets(ctx, spec, PartitionOptions{Targets: ao.Targets, Env: ao.BootDir.Env})
	if err != nil {
		return err
	}
	bd, err := openAgainstBootDir(ctx, ao, targets)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := bd.Close(context.WithoutCancel(ctx)); cerr != nil && err == nil {
			err = cerr
		}
	}()
	a := &against{o: ao, spec: spec, bd: bd, targets: targets}
	b, err := a.run(ctx)
	if err != nil {
		return err
	}
	if b.Summary != shown.Summary {
		return Environmentf("update: the node changed since the break-down was made (now: %s); run it again", b.Summary)
	}
	u := &updater{o: o, a: a, b: b, bd: bd, events: emitter(o.Events), log: o.Log, st: &runState{}}
	if u.log == nil {
		u.log = slog.New(slog.DiscardHandler)
	}
	defer func() { err = u.st.interrupted(ctx, err) }()
	u.events = u.st.track(u.events)
	if err := u.prepare(ctx); err != nil {
		return err
	}
	return u.run(ctx, res)
}

// updater is the writing part of one Update.
type updater struct {
	o      UpdateOptions
	a      *against
	b      *partition.Breakdown
	bd     *BootDir
	events emitter
	log    *slog.Logger
	st     *runState
	// merged is the layout the update leaves; devs its disks' block devices.
	merged *partition.Layout
	devs   partition.Devices
	bi     *bootloader.BootInfo
	// updated and added are merged's images the update reloads and deploys.
	updated, added []*partition.Image
	// moveTo is the entry that is the default while the default image is rewritten.
	moveTo *int
	d      *deploy.Deployer
	probe  *kernelSet
}

// prepare does everything that writes nothing: the merged layout, the devices, the
// images' sources opened and checked, the filesystems to re-create checked unmounted, and
// the entry that boots while the default image is rewritten.
func (u *updater) prepare(ctx context.Context) error {
	var err error
	if u.merged, err = partition.UpdateLayout(u.a.rec.Layout, u.a.next, u.b, u.a.o.RemoveData); err != nil {
		return Environmentf("update: %w", err)
	}
	bo := u.a.o.BootDir
	if !u.a.onNode() {
		bo.Device = u.bd.Disk
	}
	if u.devs, err = layoutDevices(ctx, u.bd, bo, u.merged, "update"); err != nil {
		return err
	}
	if u.bi, err = bootloader.ReadBootInfo(u.bd.Path + "/" + bootloader.BootInfoPath); err != nil {
		return err
	}
	u.classify()
	if err := u.refuseMounted(); err != nil {
		return err
	}
	if err := u.chooseFallback(ctx); err != nil {
		return err
	}
	return u.preflight(ctx)
}

// classify finds merged's images the break-down updates and adds.
func (u *updater) classify() {
	action := map[string]partition.ImageAction{}
	for _, c := range u.b.Images {
		action[c.Name] = c.Action
	}
	for _, im := range u.merged.Images {
		switch action[im.Name] {
		case partition.ImageUpdated:
			u.updated = append(u.updated, im)
		case partition.ImageAdded:
			u.added = append(u.added, im)
		}
	}
}

// refuseMounted refuses the update when a filesystem an updated image's reload re-creates
// is mounted (the root the node runs from): mkfs would pull it from under its users.
func (u *updater) refuseMounted() error {
	byUUID := map[string]string{}
	for _, t := range partition.FilesystemDevices(u.merged, u.devs) {
		byUUID[t.FS.UUID] = t.Dev
	}
	for _, v := range u.b.Volumes {
		if v.Kind != partition.KindPartition || v.Action != partition.ActionDestroyed {
			continue
		}
		dev := disk.PartitionPath(u.devs[v.Disk], v.Number)
		if at, err := u.a.o.BootDir.Env.Sys.MountedAt(dev); err == nil && at != "" {
			return Environmentf("update: %s (%s), which --remove-data removes, is mounted at %s: unmount it first", v.Name, dev, at)
		}
	}
	for _, im := range u.updated {
		p, err := partition.PlanReload(u.merged, im.Name)
		if err != nil {
			return Environmentf("update: %w", err)
		}
		for _, fs := range p.Recreate {
			at, err := u.a.o.BootDir.Env.Sys.MountedAt(byUUID[fs.UUID])
			if err != nil {
				return Environmentf("update: image %s: %w", im.Name, err)
			}
			if at != "" {
				return Environmentf("update: image %s: its filesystem %s (%s in the image) is mounted at %s and would be re-created: update it from another image of the node, or reload it with reload --via-ramdisk", im.Name, fs.UUID, fs.Mount, at)
			}
		}
	}
	return nil
}

// chooseFallback picks the entry that is the default while an updated default image is
// rewritten: the booted image, else the default, else the first entry, among the images
// the update neither rewrites nor removes.
func (u *updater) chooseFallback(ctx context.Context) error {
	booted := ""
	if u.bd.Live {
		booted = BootedRootUUID(ctx, u.a.o.BootDir.Env)
	}
	st, err := bootloader.List(u.bd.Path, booted)
	if err != nil {
		return err
	}
	untouched := map[int]bool{}
	for _, e := range u.bi.Elements {
		if u.untouched(e.OSID) && e.MenuentryID != "" && e.State == "" {
			untouched[e.GrubID] = true
		}
	}
	for _, id := range []*int{st.Booted, &st.Saved} {
		if id != nil && untouched[*id] {
			v := *id
			u.moveTo = &v
			return nil
		}
	}
	for _, e := range u.bi.Elements {
		if untouched[e.GrubID] {
			v := e.GrubID
			u.moveTo = &v
			return nil
		}
	}
	if len(u.updated) > 0 && u.bd.Live {
		return Usagef("update: every image of this node is rewritten: nothing could boot meanwhile (reload the running root with reload --via-ramdisk)")
	}
	return nil
}

// untouched reports whether the image named name stays in the menu as it is.
func (u *updater) untouched(name string) bool {
	for _, c := range u.b.Images {
		if c.Name == name {
			return c.Action == partition.ImageUnchanged
		}
	}
	return false
}

// preflight sets up the deploy code and opens every new image's source, format and
// checksum before anything is written.
func (u *updater) preflight(ctx context.Context) error {
	u.d, u.probe = u.o.deployer(u.a.o.BootDir.Env, u.o.Against.Fetcher, u.events)
	ims := append(append([]*partition.Image(nil), u.updated...), u.added...)
	if err := u.d.CheckNodeTools(ims); err != nil {
		return Environmentf("update: %w", err)
	}
	for _, im := range ims {
		u.events.emit(Event{Message: fmt.Sprintf("opening %s (image %s) and checking its format and checksum", im.URL, im.Name)})
		if err := u.d.Preflight(ctx, im); err != nil {
			return err
		}
	}
	return ctx.Err()
}

// ImageRun is where a run that writes images (a reload, an update) reports and works.
type ImageRun struct {
	// Events receives the run's progress, as a deploy's.
	Events func(Event)
	// Out receives the images' transfer lines; TTY redraws them.
	Out io.Writer
	TTY bool
	Log *slog.Logger
	// TmpDir holds the private mount roots ("": the system's temporary directory).
	TmpDir string
	// ProgressInterval is the period of progress log lines (0: 5 s).
	ProgressInterval time.Duration
	// NodeToolsBinary is the provisioner copied into an image that asks for the node
	// tools ("": the running one).
	NodeToolsBinary string
}

// deployer sets up the deploy code of a run on env, fetching with fetcher (nil:
// defaults), its progress to events, and the kernel probe that records each image's
// kernel as it is extracted.
func (o ImageRun) deployer(env partition.Env, fetcher *deploy.Fetcher, events emitter) (*deploy.Deployer, *kernelSet) {
	if fetcher == nil {
		fetcher = &deploy.Fetcher{Log: o.Log}
	}
	probe := newKernelSet()
	d := &deploy.Deployer{
		Fetcher: fetcher, Decompressor: deploy.Decompressor{Run: env.Run},
		Run: env.Run, Sys: env.Sys, Out: o.Out, TTY: o.TTY, Log: o.Log,
		TmpDir: o.TmpDir, ProgressInterval: o.ProgressInterval, Inspect: probe.inspect,
		NodeToolsBinary: o.NodeToolsBinary,
	}
	if o.Events != nil {
		d.OnProgress = func(image string, done, total int64) {
			events.emit(Event{Phase: PhaseImages, Image: image, Done: done, Total: total})
		}
	}
	return d, probe
}
