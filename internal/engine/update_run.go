package engine

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/provisioner/provisioner/bootloader"
	"github.com/provisioner/provisioner/partition"
)

// run writes the update: marks the updated images as being reloaded (moving the default
// away from one first), adds and grows the volumes, re-creates the updated images' own
// filesystems and deploys them, deploys the added images, finds their kernels and commits
// the boot files once. A failure marks the updated images as failed in boot-info.json and
// the history.
func (u *updater) run(ctx context.Context, res *UpdateResult) error {
	for _, im := range u.updated {
		el, err := u.bi.Find(im.Name)
		if err != nil {
			return Environmentf("update: %w", err)
		}
		moved, err := bootloader.BeginReload(ctx, u.bd.Path, el.GrubID, u.moveTo, "update")
		if err != nil {
			return err
		}
		if moved != nil {
			u.events.emit(Event{Message: fmt.Sprintf("the default moved from %s to %s while %s is rewritten", im.Name, moved.OSID, im.Name)})
		}
	}
	bi, err := u.write(ctx, res)
	if err != nil {
		return u.fail(ctx, err)
	}
	res.Applied, res.BootInfo = true, bi
	return nil
}

// fail marks every updated image as failed after the update failed with err.
func (u *updater) fail(ctx context.Context, err error) error {
	for _, im := range u.updated {
		el, ferr := u.bi.Find(im.Name)
		if ferr == nil {
			ferr = bootloader.FailReload(context.WithoutCancel(ctx), u.bd.Path, el.GrubID, "update", err)
		}
		if ferr != nil {
			err = fmt.Errorf("%w (and marking %s as failed in the boot files: %v)", err, im.Name, ferr)
		}
	}
	return err
}

// write changes the disks and commits the boot files.
func (u *updater) write(ctx context.Context, res *UpdateResult) (*bootloader.BootInfo, error) {
	env := u.a.o.BootDir.Env
	actions, err := partition.UpdateActions(u.a.rec.Layout, u.merged, u.b, u.devs, u.a.o.RemoveData)
	if err != nil {
		return nil, Environmentf("update: %w", err)
	}
	if len(actions) > 0 {
		if err := applySteps(ctx, env, u.st, u.events, fmt.Sprintf("changing the layout: %d steps", len(actions)), actions); err != nil {
			return nil, err
		}
	}
	for _, im := range u.updated {
		if err := u.reload(ctx, im); err != nil {
			return nil, err
		}
	}
	for _, im := range u.added {
		u.events.emit(Event{Phase: PhaseImages, Message: fmt.Sprintf("deploying the added image %s from %s into %s", im.Name, im.URL, im.Target)})
		if err := u.d.Deploy(ctx, u.merged, im, u.devs); err != nil {
			return nil, err
		}
	}
	return u.commit(ctx, res)
}

// reload re-creates the updated image's own filesystems (the others it mounts are kept)
// and deploys it, as a reload does.
func (u *updater) reload(ctx context.Context, im *partition.Image) error {
	p, err := partition.PlanReload(u.merged, im.Name)
	if err != nil {
		return Environmentf("update: %w", err)
	}
	actions, err := partition.PolicyOf(p.Layout).Actions(u.devs)
	if err != nil {
		return err
	}
	var made []string
	for _, fs := range p.Recreate {
		made = append(made, fs.Mount+" ("+fs.UUID+")")
	}
	phase := fmt.Sprintf("image %s: re-creating %s", im.Name, strings.Join(made, ", "))
	if err := applySteps(ctx, u.a.o.BootDir.Env, u.st, u.events, phase, actions); err != nil {
		return err
	}
	u.events.emit(Event{Phase: PhaseImages, Message: fmt.Sprintf("deploying image %s from %s into %s", im.Name, im.URL, im.Target)})
	return u.d.Deploy(ctx, p.Layout, p.Image, u.devs)
}

// commit finds the new images' kernels, builds the menu and boot-info.json of the merged
// layout (the other entries as the deploy or a reload found their kernels) and commits
// them with the record and the history.
func (u *updater) commit(ctx context.Context, res *UpdateResult) (*bootloader.BootInfo, error) {
	u.events.emit(Event{Phase: PhaseBootloader, Message: "finding the kernels, writing the menu, boot-info.json and grubenv"})
	kernels, err := u.kernels(ctx)
	if err != nil {
		return nil, err
	}
	spec := u.a.spec
	roots := rootImages(u.merged)
	entries, err := bootloader.Entries(u.merged, kernels, spec.KernelParams())
	if err != nil {
		return nil, fmt.Errorf("boot menu: %w", err)
	}
	_, noRamdisk := bootloader.ReadRamdisk(u.bd.Path)
	menu := bootloader.Config{Timeout: spec.GrubTimeout(), Entries: entries, Serial: true, Ramdisk: noRamdisk == nil}
	bs := &bootStep{l: u.merged, digest: u.digest}
	info := bs.bootInfo(roots, entries, kernels, 0, bootloader.Location{GrubDir: u.bi.GrubDir})
	info.MultibootPartition = u.bi.MultibootPartition
	up := bootloader.Updated{Menu: menu, Info: info, Default: u.b.Bootloader.DefaultAfter, Record: u.record(),
		Images: u.changedImages(info)}
	if t := u.trial(); t != "" {
		up.Trial, up.Tries = t, u.o.Tries
		up.Default = u.fallbackName()
		res.Trial, res.Tries = t, u.o.Tries
	}
	return bootloader.CommitUpdate(ctx, u.bd.Path, up)
}

// kernels returns every root image's kernel: the updated and added images' found with the
// prober the deploy used, the others' from boot-info.json.
func (u *updater) kernels(ctx context.Context) (map[string]bootloader.Kernel, error) {
	kernels := map[string]bootloader.Kernel{}
	for _, e := range u.bi.Elements {
		kernels[e.OSID] = bootloader.Kernel{Path: e.Kernel, Initrd: e.Initrd, OSName: osNameOf(e)}
	}
	var probe []*partition.Image
	for _, im := range append(append([]*partition.Image(nil), u.updated...), u.added...) {
		if im.Target == "/" {
			probe = append(probe, im)
		}
	}
	if len(probe) == 0 {
		return kernels, nil
	}
	bo := u.o.Boot
	if bo.Prober == "" {
		bo.Prober = u.a.rec.Prober
	}
	b := &bootStep{l: u.merged, devs: u.devs, env: u.a.o.BootDir.Env, opts: bo, tmpDir: u.o.TmpDir, log: u.log, events: u.events, byUUID: map[string]partition.FSDevice{}}
	for _, t := range partition.FilesystemDevices(u.merged, u.devs) {
		b.byUUID[t.FS.UUID] = t
	}
	found, err := b.kernels(ctx, probe, u.probe)
	if err != nil {
		return nil, err
	}
	for name, k := range found {
		kernels[name] = k
	}
	return kernels, nil
}

// digest is an image's verified checksum: the new one of an updated or added image, the
// recorded one of the others.
func (u *updater) digest(name string) string {
	if u.isNew(name) {
		return u.d.Digest(name)
	}
	return u.a.rec.Images[name].Digest
}

// isNew reports whether the update writes the image named name.
func (u *updater) isNew(name string) bool {
	for _, im := range append(append([]*partition.Image(nil), u.updated...), u.added...) {
		if im.Name == name {
			return true
		}
	}
	return false
}

// trial returns the image that boots next on trial: the new default when the update
// writes it and a trial is wanted and possible (another untouched image to fall back to),
// else "".
func (u *updater) trial() string {
	def := u.b.Bootloader.DefaultAfter
	if u.o.NoTrial || !u.isNew(def) || u.fallbackName() == "" || u.bi.MultibootPartition == "" {
		return ""
	}
	return def
}

// fallbackName is the os_id of the entry the default moved to (or stays on) while the
// update writes the new default: what a trial falls back to.
func (u *updater) fallbackName() string {
	if u.moveTo == nil {
		return ""
	}
	for _, e := range u.bi.Elements {
		if e.GrubID == *u.moveTo {
			return e.OSID
		}
	}
	return ""
}

// record is the plan record of the updated node: the new spec, the merged layout, the
// new menu settings, each written image's digest.
func (u *updater) record() *partition.Record {
	old := u.a.rec
	r := &partition.Record{Version: partition.RecordVersion, Spec: u.specJSON(), Layout: u.merged,
		KernelParams: u.a.spec.KernelParams(), GrubTimeout: u.a.spec.GrubTimeout(), Prober: old.Prober,
		Images: map[string]partition.ImageRecord{}}
	now := time.Now().UTC()
	for _, im := range u.merged.Images {
		switch {
		case u.isNew(im.Name):
			r.Images[im.Name] = partition.ImageRecord{Digest: u.d.Digest(im.Name), Operation: "update", At: now}
		default:
			r.Images[im.Name] = old.Images[im.Name]
		}
	}
	return r
}

// specJSON is the new spec as loaded, for the record ("null" if it cannot be encoded,
// which a loaded spec always can).
func (u *updater) specJSON() json.RawMessage {
	data, err := json.Marshal(u.a.spec)
	if err != nil {
		return json.RawMessage("null")
	}
	return data
}

// changedImages lists, for the history, the images the update rewrote, added or removed,
// each with its version before and after.
func (u *updater) changedImages(after *bootloader.BootInfo) []bootloader.ImageChange {
	var out []bootloader.ImageChange
	for _, c := range bootloader.ImageChanges(u.bi, after) {
		if !u.untouched(c.Name) {
			out = append(out, c)
		}
	}
	return out
}
