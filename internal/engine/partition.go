package engine

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"

	"github.com/provisioner/provisioner/deploy"
	"github.com/provisioner/provisioner/internal/disk"
	"github.com/provisioner/provisioner/internal/run"
	"github.com/provisioner/provisioner/partition"
	"github.com/provisioner/provisioner/schema"
)

// ErrWrite is matched by errors that happened while changing a disk: the disk may hold
// a partial layout.
// It is deploy's sentinel, so that an image's write failure (a full target filesystem)
// and a partitioning failure are one kind for every caller.
var ErrWrite = deploy.ErrWrite

// PartitionOptions are the inputs of the partition command besides the spec.
type PartitionOptions struct {
	// Targets map spec disks to devices or image files (--device); disks without one
	// are found on the machine by their spec id.
	Targets []Target
	// Sizes give the size of image files that do not exist yet (--size NAME=SIZE); they
	// are created sparse once the plan has succeeded.
	Sizes map[string]uint64
	Seed  string
	// DryRun prints the plan and every step, and touches nothing.
	DryRun bool
	// Out receives the dry-run listing and, in a deploy, each image's transfer line
	// (bytes, rate, ETA).
	Out io.Writer
	// Env is the machine: the runner for external programs and the kernel interfaces.
	Env partition.Env
	// Events, when set, receives the run's progress: each phase as it starts, every
	// policy step before it runs, each image's start and byte progress, the bootloader's
	// menu. TextEvents renders them for a terminal. It is called synchronously, from
	// concurrent images too, and must not block.
	Events func(Event)
	// WipeOnError erases the partition tables of a clean run that fails after it began
	// writing, so the machine cannot boot a half-written disk (deploy sets it unless
	// --preserve-on-error).
	WipeOnError bool
	// check, when set, vets the plan before anything is opened or written (a deploy
	// checks that its boot options can serve the layout and fetches the images'
	// checksum files).
	check func(context.Context, *partition.Layout) error
}

// target is a spec disk resolved to what stands for it on this machine.
type target struct {
	id      schema.DiskID
	path    string // block device or image file
	file    bool   // an image file (attached to a loop device to be written)
	create  uint64 // size of an image file to create; 0 when it exists
	dev     string // the block device written to (the loop device for a file)
	geo     partition.Disk
	release []func(context.Context) error
	// run says whether the run began writing: from then on an image file it created
	// stays after a failure (erased tables, or what --preserve-on-error keeps).
	run *runState
}

// Partition validates nothing itself (the spec is already loaded): it resolves and
// probes the disks, plans, and then applies the plan with the spec's partitions policy.
// Every error that can be found without writing is found before the first write.
func Partition(ctx context.Context, spec *schema.Spec, opts PartitionOptions) (*partition.Layout, error) {
	return withDisks(ctx, spec, opts, nil)
}

// afterPartition runs once the disks hold the layout, while they are still attached and
// locked; it is how deploy adds the images. files names the disks that are image files;
// events is the run's emitter, which also records the phase an interruption stops.
type afterPartition func(ctx context.Context, layout *partition.Layout, devs partition.Devices, files map[string]bool, events emitter) error

// withDisks is the common body of partition and deploy: resolve, probe, plan (all
// read-only), then open the disks (create image files, attach loop devices, lock, refuse
// busy ones), apply the partitions policy, run after, and release everything in reverse
// whatever happened. A cancelled ctx (a signal) fails the step that runs and gets the
// same cleanup as any failure, which never depends on ctx; the error is then an
// *InterruptedError.
func withDisks(ctx context.Context, spec *schema.Spec, opts PartitionOptions, after afterPartition) (layout *partition.Layout, err error) {
	if opts.Out == nil {
		opts.Out = io.Discard
	}
	st := &runState{}
	// Registered first, so it runs last: after the cleanup, which it describes.
	defer func() { err = st.interrupted(ctx, err) }()
	events := st.track(emitter(opts.Events))
	events.emit(Event{Phase: PhasePlan, Message: "resolving and probing the disks, planning"})
	targets, layout, err := planTargets(ctx, spec, opts)
	if err != nil {
		return layout, err
	}
	if opts.DryRun {
		return layout, dryRun(layout, targets, opts.Out)
	}

	defer func() {
		if rerr := release(context.WithoutCancel(ctx), targets); rerr != nil && err == nil {
			err = rerr
		}
	}()
	devs, files, err := openTargets(ctx, targets, opts.Env, st)
	if err != nil {
		return nil, err
	}
	policy := partition.PolicyOf(layout)
	actions, err := policy.Actions(devs)
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		// Interrupted while the disks were opened: nothing is written yet.
		return nil, err
	}
	if opts.WipeOnError && policy.WipesOnFailure() {
		// Registered before the first write, run (while the disks are still attached and
		// locked) only if a later step fails. The plan is captured: a failing return
		// clears the named result.
		planned := layout
		defer func() { err = eraseAfterFailure(ctx, err, st, events, opts, planned, devs) }()
	}
	if err := applyPolicy(ctx, opts, st, events, layout, actions); err != nil {
		return nil, err
	}
	if after != nil {
		if err := after(ctx, layout, devs, files, events); err != nil {
			return nil, err
		}
	}
	return layout, nil
}

// planTargets resolves and probes the disks and plans the layout, all read-only; then
// the caller's check vets the plan (returned with its error).
func planTargets(ctx context.Context, spec *schema.Spec, opts PartitionOptions) ([]*target, *partition.Layout, error) {
	targets, err := resolveTargets(ctx, spec, opts)
	if err != nil {
		return nil, nil, err
	}
	disks := map[string]partition.Disk{}
	for _, t := range targets {
		disks[t.id.Value] = t.geo
	}
	layout, err := partition.Plan(spec, disks, opts.Seed)
	if err != nil {
		return nil, nil, err
	}
	if opts.check != nil {
		if err := opts.check(ctx, layout); err != nil {
			return nil, layout, err
		}
	}
	return targets, layout, nil
}

// openTargets opens every target for writing (target.open) and returns the block
// device written to for each disk, and which disks are image files. What was opened
// is released by release, also after a failure.
func openTargets(ctx context.Context, targets []*target, env partition.Env, st *runState) (partition.Devices, map[string]bool, error) {
	devs := partition.Devices{}
	files := map[string]bool{}
	for _, t := range targets {
		t.run = st
		if err := t.open(ctx, env); err != nil {
			return nil, nil, err
		}
		devs[t.id.Value] = t.dev
		files[t.id.Value] = t.file
	}
	return devs, files, nil
}

// release undoes what opening the targets did, in reverse: detaches loop devices,
// removes an image file this run created when nothing was written to it, releases
// locks. Every step runs; the first failure is returned.
func release(ctx context.Context, targets []*target) error {
	var first error
	for i := len(targets) - 1; i >= 0; i-- {
		for j := len(targets[i].release) - 1; j >= 0; j-- {
			if err := targets[i].release[j](ctx); err != nil && first == nil {
				first = err
			}
		}
	}
	return first
}

// applyPolicy runs the partitions policy's steps. The partition phase, and the run's
// writing, begin with the first step that may write: the verify policy's comparison,
// bring-up and probes before it leave the disks as they were, and belong to planning
// (a failure there is reported in the plan phase, as the machine's or as a mismatch).
// A list that writes nothing (verify keeping every filesystem) still ends in the
// partition phase: the images are written next.
func applyPolicy(ctx context.Context, opts PartitionOptions, st *runState, events emitter, layout *partition.Layout, actions []partition.Action) error {
	phase := fmt.Sprintf("applying partitions_policy %q: %d steps", layout.Policy, len(actions))
	if partition.PolicyOf(layout).ComparesFirst() {
		events.emit(Event{Message: phase + ", comparing the disks with the plan first"})
		phase = "the disks match the plan"
	}
	return applySteps(ctx, opts.Env, st, events, phase, actions)
}

// applySteps executes actions, reporting each step, and phase (as the partition phase's
// event) before the first step that writes.
func applySteps(ctx context.Context, env partition.Env, st *runState, events emitter, phase string, actions []partition.Action) error {
	announced := false
	writing := func() {
		if announced {
			return
		}
		announced = true
		events.emit(Event{Phase: PhasePartition, Message: phase})
		st.setWritten()
	}
	hooks := partition.Hooks{
		Step: func(n, of int, a partition.Action) {
			events.emit(Event{Step: n, Steps: of, Message: a.String()})
		},
		BeforeWrite: writing,
	}
	if err := partition.Execute(ctx, env, actions, hooks); err != nil {
		return stepFailure(err, st.wasWritten())
	}
	writing()
	return nil
}

// eraseAfterFailure erases the partition tables a failed run wrote, when it failed
// (err) after it began writing, so the machine cannot boot a half-written disk. It
// returns err, noting a failure to erase.
func eraseAfterFailure(ctx context.Context, err error, st *runState, events emitter, opts PartitionOptions, planned *partition.Layout, devs partition.Devices) error {
	if err == nil || !st.wasWritten() {
		return err
	}
	what := "failed"
	if ctx.Err() != nil {
		what = "was interrupted"
	}
	events.emit(Event{Message: fmt.Sprintf("the deploy %s: erasing the partition tables it wrote (--preserve-on-error keeps them)", what)})
	if werr := partition.WipeTables(context.WithoutCancel(ctx), opts.Env, planned, devs); werr != nil {
		return fmt.Errorf("%w (and erasing the partition tables failed: %v)", err, werr)
	}
	st.setErased()
	return err
}

// resolveTargets finds every spec disk's device or image file and reads its geometry,
// read-only.
func resolveTargets(ctx context.Context, spec *schema.Spec, opts PartitionOptions) ([]*target, error) {
	if err := checkTargets(spec, opts.Targets, opts.Sizes, true); err != nil {
		return nil, err
	}
	given := map[string]string{}
	for _, t := range opts.Targets {
		given[t.Name] = t.Path
	}
	var out []*target
	seen := map[string]string{}
	for i := range spec.Partitions {
		st := &spec.Partitions[i]
		if st.Type != schema.KindDisk {
			continue
		}
		t := &target{id: st.DiskID}
		if p, ok := given[st.DiskID.Value]; ok {
			t.path = p
		} else {
			p, err := opts.Env.Sys.Resolve(ctx, st.DiskID.Type, st.DiskID.Value)
			if err != nil {
				return nil, Environmentf("disk %s (%s): %w", st.DiskID, schema.Ptr("/partitions", i, "id"), err)
			}
			t.path = p
		}
		if other, dup := seen[t.path]; dup {
			return nil, Usagef("disks %s and %s are both %s", other, st.DiskID, t.path)
		}
		seen[t.path] = st.DiskID.String()
		if err := t.probe(ctx, opts.Sizes[st.DiskID.Value]); err != nil {
			return nil, err
		}
		out = append(out, t)
	}
	return out, nil
}

func (t *target) probe(ctx context.Context, createSize uint64) error {
	g, err := disk.Probe(ctx, t.path)
	switch {
	case errors.Is(err, disk.ErrNotFound) && createSize > 0:
		t.file, t.create = true, createSize
		t.geo = partition.Disk{Path: t.path, SizeBytes: createSize, SectorSize: 512}
		return nil
	case errors.Is(err, disk.ErrNotFound):
		return Environmentf("disk %s: %s does not exist (give --size %s=SIZE to create an image file)", t.id, t.path, t.id.Value)
	case err != nil:
		return &classified{ErrEnvironment, fmt.Errorf("disk %s: %w", t.id, err)}
	}
	t.file = !g.Block
	t.geo = partition.Disk{Path: t.path, SizeBytes: g.SizeBytes, SectorSize: g.SectorSize}
	return nil
}

// open makes the target writable and safe to write: creates a missing image file,
// locks an image file and refuses it when a loop device bound to it is in use, attaches
// it to a loop device, takes the exclusive lock of the disk, and refuses a busy disk.
// Nothing waits: a second run aimed at the same disk or file fails at once.
func (t *target) open(ctx context.Context, env partition.Env) error {
	if t.create > 0 {
		f, err := os.OpenFile(t.path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
		if err != nil {
			return Environmentf("creating image file %s: %w", t.path, err)
		}
		if err := f.Close(); err != nil {
			return Environmentf("creating image file %s: %w", t.path, err)
		}
	}
	t.dev = t.path
	if t.file {
		// The image file itself is locked, as list and switch-default lock it, until
		// after its loop device is detached.
		flock, err := disk.LockPath(ctx, t.path, disk.Exclusive, 0)
		if err != nil {
			return Environmentf("disk %s: %w", t.id, err)
		}
		t.release = append(t.release, func(context.Context) error { return flock.Release() })
		if t.create > 0 {
			t.release = append(t.release, t.removeCreated)
			if err := os.Truncate(t.path, int64(t.create)); err != nil {
				return Environmentf("sizing image file %s: %w", t.path, err)
			}
		}
		if err := env.Sys.CheckFileNotBusy(ctx, t.path); err != nil {
			return Environmentf("disk %s: %w", t.id, err)
		}
		loop, err := disk.AttachLoop(ctx, t.path, t.geo.SectorSize)
		if err != nil {
			return Environmentf("disk %s: attaching %s to a loop device: %w", t.id, t.path, err)
		}
		t.dev = loop.Path
		t.release = append(t.release, loop.Detach)
	}
	lock, err := disk.LockDevice(ctx, t.dev)
	if err != nil {
		return Environmentf("disk %s: %w", t.id, err)
	}
	t.release = append(t.release, func(context.Context) error { return lock.Release() })
	if err := env.Sys.CheckNotBusy(ctx, t.dev); err != nil {
		return Environmentf("disk %s: %w", t.id, err)
	}
	return nil
}

// removeCreated removes the image file this run created, unless the run began writing
// to it: a run refused before that leaves nothing behind.
func (t *target) removeCreated(context.Context) error {
	if t.run != nil && t.run.wasWritten() {
		return nil
	}
	if err := os.Remove(t.path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("removing image file %s, which this run created: %w", t.path, err)
	}
	return nil
}

// dryRun prints the plan and the steps a real run would take, with image files shown
// on the loop device they would get.
func dryRun(layout *partition.Layout, targets []*target, out io.Writer) error {
	if err := layout.WriteTable(out); err != nil {
		return err
	}
	devs := partition.Devices{}
	fmt.Fprintln(out)
	for _, t := range targets {
		devs[t.id.Value] = t.path
		switch {
		case t.create > 0:
			devs[t.id.Value] = "/dev/loopX"
			fmt.Fprintf(out, "disk %s: would create %s (%d bytes, sparse) and attach it to a free loop device, shown as /dev/loopX\n", t.id, t.path, t.create)
		case t.file:
			devs[t.id.Value] = "/dev/loopX"
			fmt.Fprintf(out, "disk %s: %s would be attached to a free loop device, shown as /dev/loopX\n", t.id, t.path)
		default:
			fmt.Fprintf(out, "disk %s: %s\n", t.id, t.path)
		}
	}
	policy := partition.PolicyOf(layout)
	actions, err := policy.Actions(devs)
	if err != nil {
		return err
	}
	if policy.ComparesFirst() {
		fmt.Fprintf(out, "partitions_policy %q: the disks would first be compared with the plan (±1 MiB), writing nothing; on a match what they hold would be brought up and only the filesystems without keep_data re-created:\n", layout.Policy)
	}
	fmt.Fprintf(out, "dry run: %d steps, nothing written\n", len(actions))
	for i, a := range actions {
		fmt.Fprintf(out, "  %d. %s\n", i+1, a)
	}
	return nil
}

// HostEnv is the real machine: programs run through internal/run, kernel interfaces at
// /sys, /dev and /proc. log gets one line per program run (nil: none).
func HostEnv(log *slog.Logger) partition.Env {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return partition.Env{Run: run.Exec{Logger: log}, Sys: disk.Sys{}}
}
