package engine

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/provisioner/provisioner/bootloader"
	"github.com/provisioner/provisioner/partition"
)

// run does the writing part of a reload: marks the image as being reloaded (moving the
// default away from it first), re-creates its filesystems, deploys it, finds its kernel and
// commits. A failure marks the image as failed in boot-info.json and the history.
func (r *reload) run(ctx context.Context) (*ReloadResult, error) {
	res := &ReloadResult{From: r.version(r.el.ImageName, r.el.ImageUUID, r.el.Digest), Tries: r.o.Tries, Kept: r.plan.Kept}
	for _, fs := range r.plan.Recreate {
		res.Recreated = append(res.Recreated, partition.KeptMount{Path: fs.Mount, UUID: fs.UUID})
	}
	moved, err := bootloader.BeginReload(ctx, r.bd.Path, r.el.GrubID, r.moveTo, "reload")
	if err != nil {
		return nil, err
	}
	if moved != nil {
		res.MovedDefault = moved
		r.events.emit(Event{Message: fmt.Sprintf("the default moved from %s to %s while %s is reloaded", r.el.OSID, moved.OSID, r.el.OSID)})
	}
	bi, err := r.write(ctx, res)
	if err != nil {
		if ferr := bootloader.FailReload(context.WithoutCancel(ctx), r.bd.Path, r.el.GrubID, "reload", err); ferr != nil {
			err = fmt.Errorf("%w (and marking %s as failed in the boot files: %v)", err, r.el.OSID, ferr)
		}
		return nil, err
	}
	res.BootInfo = bi
	for _, e := range bi.Elements {
		if e.GrubID == r.el.GrubID {
			res.Element = e
		}
	}
	return res, nil
}

// version identifies an image for the history.
func (r *reload) version(name, uuid, digest string) bootloader.ImageVersion {
	return bootloader.ImageVersion{ImageName: name, ImageUUID: uuid, Digest: digest}
}

// write re-creates the image's filesystems, deploys it, and commits the boot files.
func (r *reload) write(ctx context.Context, res *ReloadResult) (*bootloader.BootInfo, error) {
	l, im := r.plan.Layout, r.plan.Image
	actions, err := partition.PolicyOf(l).Actions(r.devs)
	if err != nil {
		return nil, err
	}
	r.events.emit(Event{Message: fmt.Sprintf("re-creating %d filesystem(s) of %s: %s; kept: %s", len(res.Recreated), im.Name, describe(res.Recreated), orNone(describe(res.Kept)))})
	if err := applyPolicy(ctx, PartitionOptions{Env: r.o.BootDir.Env}, r.st, r.events, l, actions); err != nil {
		return nil, err
	}
	r.events.emit(Event{Phase: PhaseImages, Message: fmt.Sprintf("deploying image %s from %s into %s", im.Name, im.URL, im.Target)})
	if err := r.d.Deploy(ctx, l, im, r.devs); err != nil {
		return nil, err
	}
	r.events.emit(Event{Phase: PhaseBootloader, Message: "finding the kernel, writing the menu, boot-info.json and the trial"})
	menu, entry, k, err := r.menu(ctx)
	if err != nil {
		return nil, err
	}
	digest := r.d.Digest(im.Name)
	res.To = r.version(im.ImageName, im.ImageUUID, digest)
	fss := map[string]string{}
	for _, m := range im.Mounts {
		fss[m.Path] = m.FSUUID
	}
	el := bootloader.Element{
		ImageName: im.ImageName, ImageUUID: im.ImageUUID, BootName: entry.Title,
		Kernel: k.Path, Initrd: k.Initrd, Cmdline: entry.Cmdline, Filesystems: fss, Digest: digest,
	}
	r.updateRecord(digest)
	if r.o.InRamdisk && r.o.RamdiskAfter != nil {
		e := bootloader.RamdiskEntry{BootUUID: r.bi.MultibootPartition, Args: r.o.RamdiskAfter}
		if err := bootloader.WriteRamdiskEntry(ctx, r.bd.Path, e); err != nil {
			return nil, fmt.Errorf("rewriting the ramdisk's boot entry: %w", err)
		}
	}
	return bootloader.CommitReload(ctx, r.bd.Path, menu, bootloader.Reloaded{
		GrubID: r.el.GrubID, Element: el, Tries: r.o.Tries, Record: r.rec, From: res.From, To: res.To,
	})
}

// orNone is s, or "none" when s is empty.
func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

// menu finds the reloaded image's kernel with the prober the deploy used and builds the
// whole menu: the other entries from boot-info.json, as the deploy found them.
func (r *reload) menu(ctx context.Context) (bootloader.Config, bootloader.MenuEntry, bootloader.Kernel, error) {
	l, im := r.plan.Layout, r.plan.Image
	prober := r.o.Prober
	if prober == "" {
		prober = r.rec.Prober
	}
	bo := r.o.Boot
	bo.Prober = prober
	b := &bootStep{l: l, devs: r.devs, env: r.o.BootDir.Env, opts: bo, tmpDir: r.o.TmpDir, log: r.log, events: r.events, byUUID: map[string]partition.FSDevice{}}
	for _, t := range partition.FilesystemDevices(l, r.devs) {
		b.byUUID[t.FS.UUID] = t
	}
	found, err := b.kernels(ctx, []*partition.Image{im}, r.probe)
	if err != nil {
		return bootloader.Config{}, bootloader.MenuEntry{}, bootloader.Kernel{}, err
	}
	cfg, err := r.menuWith(found[im.Name])
	if err != nil {
		return bootloader.Config{}, bootloader.MenuEntry{}, bootloader.Kernel{}, err
	}
	var entry bootloader.MenuEntry
	for _, e := range cfg.Entries {
		if e.ID == r.el.MenuentryID {
			entry = e
		}
	}
	if entry.ID == "" {
		return bootloader.Config{}, bootloader.MenuEntry{}, bootloader.Kernel{}, fmt.Errorf("boot menu: no entry %s for image %s", r.el.MenuentryID, im.Name)
	}
	return cfg, entry, found[im.Name], nil
}

// menuWith builds the whole menu from the record and boot-info.json: every entry as the
// deploy (or a later reload) found its kernel, the reloaded image's with k when k has a
// path. The ramdisk's entry stays in the menu when the ramdisk is kept.
func (r *reload) menuWith(k bootloader.Kernel) (bootloader.Config, error) {
	kernels := map[string]bootloader.Kernel{}
	for _, e := range r.bi.Elements {
		kernels[e.OSID] = bootloader.Kernel{Path: e.Kernel, Initrd: e.Initrd, OSName: osNameOf(e)}
	}
	if k.Path != "" {
		kernels[r.plan.Image.Name] = k
	}
	entries, err := bootloader.Entries(r.plan.Layout, kernels, r.rec.KernelParams)
	if err != nil {
		return bootloader.Config{}, fmt.Errorf("boot menu: %w", err)
	}
	_, noRamdisk := bootloader.ReadRamdisk(r.bd.Path)
	return bootloader.Config{Timeout: r.rec.GrubTimeout, Entries: entries, Serial: true, Ramdisk: noRamdisk == nil}, nil
}

// osNameOf recovers the OS name of an entry from its title, "<OS name> (<image name>)".
func osNameOf(e bootloader.Element) string {
	if name, ok := strings.CutSuffix(e.BootName, " ("+e.OSID+")"); ok && name != "" {
		return name
	}
	return ""
}

// updateRecord puts the image's new source and digest into the plan record.
func (r *reload) updateRecord(digest string) {
	im := r.plan.Image
	if rim := r.rec.Image(im.Name); rim != nil {
		rim.URL, rim.Checksum, rim.Format, rim.ImageUUID, rim.ImageName = im.URL, im.Checksum, im.Format, im.ImageUUID, im.ImageName
	}
	r.rec.Images[im.Name] = partition.ImageRecord{Digest: digest, Operation: "reload", At: time.Now().UTC()}
}
