package engine

import (
	"context"
	"errors"
	"fmt"

	"github.com/provisioner/provisioner/deploy"
	"github.com/provisioner/provisioner/internal/disk"
	"github.com/provisioner/provisioner/partition"
	"github.com/provisioner/provisioner/schema"
)

// disks reads every disk of the spec and of the recorded layout old into cur, locked
// shared as list locks them (a deploy's exclusive lock keeps it from reading a disk
// being written), and returns the spec's disks' geometry for the plan.
func (a *against) disks(ctx context.Context, old *partition.Layout, cur *partition.Current) (map[string]partition.Disk, error) {
	geo := map[string]partition.Disk{}
	for _, t := range a.targets {
		cd, err := a.readDisk(ctx, t.id.String(), t.path, t.geo)
		if err != nil {
			return nil, err
		}
		geo[t.id.Value] = t.geo
		cur.Disks[t.id.Value] = cd
	}
	for _, d := range old.Disks {
		if cur.Disks[d.ID.Value] != nil {
			continue
		}
		cd, err := a.recordOnlyDisk(ctx, d)
		if err != nil {
			return nil, err
		}
		cur.Disks[d.ID.Value] = cd
	}
	return geo, nil
}

// recordOnlyDisk reads a disk the deploy had and the spec no longer names: on the node it
// is found by its id; offline --device cannot name it.
func (a *against) recordOnlyDisk(ctx context.Context, d *partition.DiskLayout) (*partition.CurrentDisk, error) {
	if !a.onNode() {
		return nil, Usagef("disk %s of the deployed layout is not in the spec, and --device names only the spec's disks: compare on the node, or keep the disk in the spec", d.ID)
	}
	p, err := a.o.BootDir.Env.Sys.Resolve(ctx, d.ID.Type, d.ID.Value)
	if err != nil {
		return nil, Environmentf("disk %s of the deployed layout: %w", d.ID, err)
	}
	g, err := disk.Probe(ctx, p)
	if err != nil {
		return nil, Environmentf("disk %s of the deployed layout: %w", d.ID, err)
	}
	return a.readDisk(ctx, d.ID.String(), p, partition.Disk{Path: p, SizeBytes: g.SizeBytes, SectorSize: g.SectorSize})
}

// readDisk locks the disk or image file path shared and reads its GPT (nil when it has
// none); an image file is read directly, never attached.
func (a *against) readDisk(ctx context.Context, name, path string, g partition.Disk) (*partition.CurrentDisk, error) {
	if err := a.bd.lock(ctx, a.o.BootDir, path, "disk "+name+" ("+path+")"); err != nil {
		return nil, err
	}
	cd := &partition.CurrentDisk{SizeBytes: g.SizeBytes, SectorSize: g.SectorSize}
	t, err := partition.ReadTable(ctx, path, g.SectorSize)
	switch {
	case errors.Is(err, partition.ErrNoGPT):
	case err != nil:
		return nil, Environmentf("disk %s: %w", name, err)
	default:
		cd.Table = t
	}
	return cd, nil
}

// lvm puts the logical volumes' sizes and the volume groups' free space into cur when
// the record or the plan next has volume groups: on the node as lvm reports them;
// offline the record's, since LVM is not brought up on a disk looked at offline.
func (a *against) lvm(ctx context.Context, old, next *partition.Layout, cur *partition.Current) error {
	if len(old.VGs) == 0 && len(next.VGs) == 0 {
		return nil
	}
	if !a.onNode() {
		cur.LVs, cur.VGFree = recordedLVM(old)
		a.note("offline, the logical volumes' sizes and the volume groups' free space are the deploy's record's: LVM is not brought up on a disk looked at offline")
		return nil
	}
	var err error
	if cur.LVs, err = partition.ProbeLVs(ctx, a.o.BootDir.Env.Run); err != nil {
		return Environmentf("%w", err)
	}
	if cur.VGFree, err = partition.ProbeVGFree(ctx, a.o.BootDir.Env.Run); err != nil {
		return Environmentf("%w", err)
	}
	return nil
}

// recordedLVM returns the logical volumes' sizes and the groups' free space as the
// layout l planned them.
func recordedLVM(l *partition.Layout) (lvs, free map[string]uint64) {
	lvs, free = map[string]uint64{}, map[string]uint64{}
	for _, vg := range l.VGs {
		free[vg.Name] = vg.FreeExtents * vg.ExtentSize
		for _, lv := range vg.LVs {
			lvs[vg.Name+"/"+lv.Name] = lv.SizeBytes
		}
	}
	return lvs, free
}

// resolveDigests resolves the checksums of next's images as a deploy does before it writes: a
// checksum file (URL or path) is fetched and the image's line picked, a plain digest is
// taken as it is. rsync sources have none and are skipped (a deploy would ask their
// daemon). The errors are image errors, naming the image.
func (a *against) resolveDigests(ctx context.Context, next *partition.Layout) (map[string]string, error) {
	var ims []*partition.Image
	for _, im := range next.Images {
		if im.Checksum != "" && !schema.IsRsyncSource(im.URL) {
			ims = append(ims, im)
		}
	}
	if len(ims) == 0 {
		return nil, nil
	}
	f := a.o.Fetcher
	if f == nil {
		f = &deploy.Fetcher{}
	}
	env := a.o.BootDir.Env
	d := &deploy.Deployer{Fetcher: f, Run: env.Run, Sys: env.Sys}
	if err := d.ResolveDigests(ctx, ims); err != nil {
		return nil, fmt.Errorf("plan --against: %w", err)
	}
	out := map[string]string{}
	for _, im := range ims {
		if dg := d.Digest(im.Name); dg != "" {
			out[im.Name] = dg
		}
	}
	return out, nil
}
