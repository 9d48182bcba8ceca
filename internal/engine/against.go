package engine

import (
	"context"
	"errors"
	"path/filepath"

	"github.com/provisioner/provisioner/bootloader"
	"github.com/provisioner/provisioner/deploy"
	"github.com/provisioner/provisioner/internal/disk"
	"github.com/provisioner/provisioner/partition"
	"github.com/provisioner/provisioner/schema"
)

// AgainstOptions say where PlanAgainst finds the deployed node it compares a spec with.
type AgainstOptions struct {
	// Targets map the spec's disks to block devices or disk-image files (--device
	// NAME=PATH): the node is looked at offline, its boot files found on the first of
	// these disks holding them. Empty: on the node itself, the spec's disks found by their
	// ids as a deploy finds them, and the running system's boot files.
	Targets []Target
	// BootDir is where the boot files are looked for: its Env, TmpDir and LockWait are
	// used, and Dir, when set, names a directory holding them. PlanAgainst sets Device
	// and never opens anything writable.
	BootDir BootDirOptions
	// Fetcher fetches the checksum files the spec's images name (nil: defaults).
	Fetcher *deploy.Fetcher
	// RemoveData breaks down the volumes of images the spec removed as destroyed; without
	// it they are left alone.
	RemoveData bool
	// Note, when set, receives what the caller should know about how the disks were
	// compared (offline, the logical volumes are the record's).
	Note func(string)
}

// PlanAgainst breaks down what applying spec to a deployed node would do, writing
// nothing: it reads the deploy's record, boot-info.json and grubenv from the boot files,
// each disk's GPT and size, and on the node the logical volumes and the volume groups'
// free space; it plans spec on the same disks, resolves the images' checksum files as a
// deploy does (a checksum URL is fetched, a plain digest is not), and returns
// partition.Diff's break-down. A spec that cannot be applied is a *partition.RefusedError,
// returned with the break-down so that it can be printed.
func PlanAgainst(ctx context.Context, spec *schema.Spec, o AgainstOptions) (_ *partition.Breakdown, err error) {
	targets, err := resolveTargets(ctx, spec, PartitionOptions{Targets: o.Targets, Env: o.BootDir.Env})
	if err != nil {
		return nil, err
	}
	o.BootDir.Writable = false
	bd, err := openAgainstBootDir(ctx, o, targets)
	if err != nil {
		return nil, err
	}
	defer func() {
		if cerr := bd.Close(context.WithoutCancel(ctx)); cerr != nil && err == nil {
			err = cerr
		}
	}()
	a := &against{o: o, spec: spec, bd: bd, targets: targets}
	return a.run(ctx)
}

// openAgainstBootDir opens the boot files read-only: in BootDir.Dir when set, on the
// running system when no disk is given, else on the first given disk holding them.
func openAgainstBootDir(ctx context.Context, o AgainstOptions, targets []*target) (*BootDir, error) {
	bo := o.BootDir
	if bo.Dir != "" || len(o.Targets) == 0 {
		bo.Device = ""
		return OpenBootDir(ctx, bo)
	}
	given := map[string]bool{}
	for _, t := range o.Targets {
		given[t.Name] = true
	}
	var errs []error
	for _, t := range targets {
		if !given[t.id.Value] {
			continue
		}
		bo.Device = t.path
		bd, err := OpenBootDir(ctx, bo)
		if err == nil {
			return bd, nil
		}
		if errors.Is(err, disk.ErrLocked) || !errors.Is(err, ErrEnvironment) {
			return nil, err
		}
		errs = append(errs, err)
	}
	if len(errs) == 1 {
		return nil, errs[0]
	}
	return nil, Environmentf("no disk given with --device holds the boot files: %w", errors.Join(errs...))
}

// against is one run of PlanAgainst, and the reading part of an Update.
type against struct {
	o       AgainstOptions
	spec    *schema.Spec
	bd      *BootDir
	targets []*target
	// What run read and planned: the deploy's record, the disks as they are, the spec's
	// plan on them and its images' digests.
	rec     *partition.Record
	cur     *partition.Current
	next    *partition.Layout
	digests map[string]string
}

// onNode reports whether the node is looked at from inside (no --device): only then are
// the other disks found by their ids and LVM asked.
func (a *against) onNode() bool { return len(a.o.Targets) == 0 }

// note passes a remark to the caller.
func (a *against) note(s string) {
	if a.o.Note != nil {
		a.o.Note(s)
	}
}

// run reads the node, plans the spec on its disks and diffs them.
func (a *against) run(ctx context.Context) (*partition.Breakdown, error) {
	rec, err := bootloader.ReadRecord(a.bd.Path)
	if err != nil {
		return nil, Environmentf("plan --against %s: %w", a.bd.Source, err)
	}
	cur := &partition.Current{Disks: map[string]*partition.CurrentDisk{}}
	a.rec, a.cur = rec, cur
	if err := a.boot(ctx, cur); err != nil {
		return nil, err
	}
	geo, err := a.disks(ctx, rec.Layout, cur)
	if err != nil {
		return nil, err
	}
	// The record's seed keeps the UUIDs of what is kept; Diff matches by position anyway.
	next, err := partition.Plan(a.spec, geo, rec.Layout.Seed)
	if err != nil {
		return nil, err
	}
	if err := a.lvm(ctx, rec.Layout, next, cur); err != nil {
		return nil, err
	}
	digests, err := a.resolveDigests(ctx, next)
	if err != nil {
		return nil, err
	}
	a.next, a.digests = next, digests
	return partition.DiffWith(rec, cur, next, digests, partition.DiffOptions{RemoveData: a.o.RemoveData})
}

// boot reads boot-info.json and grubenv into cur: the entries, the default and, on the
// running system, the entry booted now.
func (a *against) boot(ctx context.Context, cur *partition.Current) error {
	booted := ""
	if a.bd.Live {
		booted = BootedRootUUID(ctx, a.o.BootDir.Env)
	}
	bi, err := bootloader.ReadBootInfo(filepath.Join(a.bd.Path, bootloader.BootInfoPath))
	if err != nil {
		return Environmentf("%w", err)
	}
	st, err := bootloader.List(a.bd.Path, booted)
	if err != nil {
		return Environmentf("%w", err)
	}
	bootState(bi, st, cur)
	return nil
}

// bootState puts the boot entries into cur, each with its image's version, and names
// (by os_id) the default and the booted image. The default is the one grub falls back to
// after a one-shot entry or a trial: grubenv's saved_entry, else boot-info.json's
// current_element (also while the deploy ramdisk is the saved entry, since it reloads
// that image).
func bootState(bi *bootloader.BootInfo, st bootloader.Status, cur *partition.Current) {
	names := map[int]string{}
	for _, e := range st.Elements {
		cur.Entries = append(cur.Entries, partition.BootEntry{GrubID: e.GrubID, Name: e.OSID, ImageName: e.ImageName,
			ImageUUID: e.ImageUUID, Digest: e.Digest, State: e.State})
		names[e.GrubID] = e.OSID
	}
	cur.Default = names[st.Saved]
	if cur.Default == "" {
		cur.Default = names[bi.CurrentElement]
	}
	if st.Booted != nil {
		cur.Booted = names[*st.Booted]
	}
}
