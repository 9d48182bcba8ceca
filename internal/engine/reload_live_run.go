package engine

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/provisioner/provisioner/bootloader"
	"github.com/provisioner/provisioner/deploy"
	"github.com/provisioner/provisioner/partition"
	"golang.org/x/sys/unix"
)

// stagingMargin is added to the estimate of the staged tree's size: the new image may be
// a little larger than the one it replaces, and the filesystem needs some room to work.
const stagingMargin = 64 << 20

// run stages, checks the kernel, plans, and (unless DryRun) applies, commits and restarts.
func (l *liveReload) run(ctx context.Context) (*LiveReloadResult, error) {
	r := l.reload
	l.res = &LiveReloadResult{From: r.version(r.el.ImageName, r.el.ImageUUID, r.el.Digest), Element: r.el, DryRun: l.lo.DryRun}
	if err := l.stageImage(ctx); err != nil {
		return nil, err
	}
	if err := l.checkKernel(); err != nil {
		return nil, errors.Join(err, l.removeStage())
	}
	plan, err := deploy.PlanSync(l.lo.Root, l.stage, l.syncOptions())
	if err != nil {
		return nil, errors.Join(Environmentf("reload --live: %w", err), l.removeStage())
	}
	l.plan, l.res.Plan = plan, plan
	im := r.plan.Image
	digest := r.d.Digest(im.Name)
	name := im.ImageName
	l.res.To = r.version(name, im.ImageUUID, digest)
	if l.lo.DryRun {
		return l.res, l.removeStage()
	}
	if err := l.apply(ctx); err != nil {
		return nil, err
	}
	r.updateRecord(digest)
	r.rec.Images[im.Name] = partition.ImageRecord{Digest: digest, Operation: "reload-live", At: time.Now().UTC()}
	bi, err := bootloader.CommitLiveReload(ctx, r.bd.Path, bootloader.LiveReloaded{
		GrubID: r.el.GrubID, ImageName: name, ImageUUID: im.ImageUUID, Digest: digest, Record: r.rec,
		From: l.res.From, To: l.res.To, Result: l.summary(),
	})
	if err != nil {
		return nil, err
	}
	for _, e := range bi.Elements {
		if e.GrubID == r.el.GrubID {
			l.res.Element = e
		}
	}
	return l.res, l.restart(ctx)
}

// apply marks the image as being reloaded, syncs the root, and marks it failed when the
// sync fails.
func (l *liveReload) apply(ctx context.Context) error {
	r := l.reload
	// No other entry to move the default to: the same image keeps booting the same kernel.
	if _, err := bootloader.BeginReload(ctx, r.bd.Path, r.el.GrubID, nil, "reload-live"); err != nil {
		return errors.Join(err, l.removeStage())
	}
	r.events.emit(Event{Phase: PhaseImages, Message: fmt.Sprintf("syncing %s to the new image: %s", l.lo.Root, l.summary())})
	r.st.setWritten()
	if err := deploy.ApplySync(ctx, l.plan); err != nil {
		err = &classified{ErrWrite, err}
		if ferr := bootloader.FailReload(context.WithoutCancel(ctx), r.bd.Path, r.el.GrubID, "reload-live", err); ferr != nil {
			err = fmt.Errorf("%w (and marking %s as failed in the boot files: %v)", err, r.el.OSID, ferr)
		}
		return err
	}
	return nil
}

// summary counts the plan's classes: "3 added (1.0 MiB), ...".
func (l *liveReload) summary() string {
	var parts []string
	for _, c := range deploy.SyncClasses {
		t := l.plan.Totals[c]
		parts = append(parts, fmt.Sprintf("%d %s (%s)", t.Count, c, humanBytes(t.Bytes)))
	}
	return strings.Join(parts, ", ")
}

// stageImage removes a staging directory an earlier run left, checks the room, and
// stages the new image; ENOSPC is reported with the numbers.
func (l *liveReload) stageImage(ctx context.Context) error {
	r := l.reload
	if _, err := os.Lstat(l.stage); err == nil {
		r.events.emit(Event{Message: fmt.Sprintf("removing %s, left by an earlier live reload that did not finish", l.stage)})
	}
	if err := l.removeStage(); err != nil {
		return err
	}
	need, free, err := l.room()
	if err != nil {
		return err
	}
	if free < need {
		return Environmentf("reload --live: the root filesystem at %s has %s free; staging the new image needs about %s (what the current image's files take there, plus 10%% and %s): free some room, or reload through the deploy ramdisk (--via-ramdisk)",
			l.lo.Root, humanBytes(free), humanBytes(need), humanBytes(stagingMargin))
	}
	if err := os.Mkdir(l.stage, 0o700); err != nil {
		return Environmentf("reload --live: making %s: %w", l.stage, err)
	}
	r.events.emit(Event{Phase: PhaseImages, Message: fmt.Sprintf("staging image %s from %s in %s (%s free, about %s needed)", r.plan.Image.Name, r.o.URL, l.stage, humanBytes(free), humanBytes(need))})
	if err := r.d.Stage(ctx, r.plan.Image, l.stage); err != nil {
		if errors.Is(err, unix.ENOSPC) {
			err = fmt.Errorf("staging filled the root filesystem at %s (%s was free before, about %s was estimated): %w", l.lo.Root, humanBytes(free), humanBytes(need), err)
		}
		return errors.Join(err, l.removeStage())
	}
	return nil
}

// room estimates the bytes the staged tree needs and says how many are free.
func (l *liveReload) room() (need, free int64, err error) {
	used, err := deploy.RootBytes(l.lo.Root, l.syncOptions())
	if err != nil {
		return 0, 0, Environmentf("reload --live: %w", err)
	}
	var fs unix.Statfs_t
	if err := unix.Statfs(l.lo.Root, &fs); err != nil {
		return 0, 0, Environmentf("reload --live: the root filesystem at %s: %w", l.lo.Root, err)
	}
	return used + used/10 + stagingMargin, int64(fs.Bavail) * fs.Bsize, nil
}

// checkKernel refuses a new image whose kernel is not the running one, byte for byte:
// the running kernel's file must be in the staged tree, and the kernel the boot entry
// loads must not change either.
func (l *liveReload) checkKernel() error {
	rel := l.lo.KernelRelease
	if rel == "" {
		var u unix.Utsname
		if err := unix.Uname(&u); err != nil {
			return Environmentf("reload --live: uname: %w", err)
		}
		rel = unix.ByteSliceToString(u.Release[:])
	}
	l.res.Kernel = rel
	running := filepath.Join(l.lo.Root, "boot", "vmlinuz-"+rel)
	cur, err := os.ReadFile(running)
	if err != nil {
		return Environmentf("reload --live: the running kernel's file: %w", err)
	}
	staged := filepath.Join(l.stage, "boot", "vmlinuz-"+rel)
	next, err := os.ReadFile(staged)
	if errors.Is(err, os.ErrNotExist) {
		return Usagef("reload --live: the new image's kernel is %s, the running kernel is %s: a live reload keeps the running kernel; reload through the deploy ramdisk (--via-ramdisk)", orNone(l.stagedKernels()), rel)
	}
	if err != nil {
		return Environmentf("reload --live: the new image's kernel: %w", err)
	}
	if !bytes.Equal(cur, next) {
		return Usagef("reload --live: the new image's kernel %s is not the running kernel %s (same release, other bytes: %d and %d): reload through the deploy ramdisk (--via-ramdisk)", rel, rel, len(next), len(cur))
	}
	if k := l.el.Kernel; k != "" && k != "/boot/vmlinuz-"+rel {
		a, aerr := os.ReadFile(filepath.Join(l.lo.Root, k))
		b, berr := os.ReadFile(filepath.Join(l.stage, k))
		if aerr == nil && (berr != nil || !bytes.Equal(a, b)) {
			return Usagef("reload --live: the boot entry loads %s, which the new image changes (its kernels: %s): the menu would need rewriting; reload through the deploy ramdisk (--via-ramdisk)", k, orNone(l.stagedKernels()))
		}
	}
	return nil
}

// stagedKernels lists the releases of the staged tree's kernels.
func (l *liveReload) stagedKernels() string {
	m, _ := filepath.Glob(filepath.Join(l.stage, "boot", "vmlinuz-*"))
	var out []string
	for _, p := range m {
		out = append(out, strings.TrimPrefix(filepath.Base(p), "vmlinuz-"))
	}
	sort.Strings(out)
	return strings.Join(out, ", ")
}
