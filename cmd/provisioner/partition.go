package main

import (
	"fmt"

	"github.com/provisioner/provisioner/internal/engine"
	"github.com/provisioner/provisioner/partition"
	"github.com/provisioner/provisioner/schema"
	"github.com/spf13/cobra"
)

// diskFlags are the flags partition and deploy share: which devices, sizes, seed,
// dry run.
type diskFlags struct {
	devices, sizes []string
	seed           string
	dryRun         bool
}

func (f *diskFlags) bind(cmd *cobra.Command) {
	cmd.Flags().StringArrayVar(&f.devices, "device", nil, "NAME=PATH: write disk NAME of the spec to a block device or image file (repeatable)")
	cmd.Flags().StringArrayVar(&f.sizes, "size", nil, "NAME=SIZE: create a missing image file of this size (repeatable)")
	cmd.Flags().StringVar(&f.seed, "seed", "", "seed for every GUID and UUID (default: random, printed)")
	cmd.Flags().BoolVar(&f.dryRun, "dry-run", false, "print the plan and the steps, touch nothing")
}

// options turns the flags into the engine's options, for the real machine.
func (f *diskFlags) options(s *streams) (engine.PartitionOptions, error) {
	opts := engine.PartitionOptions{Seed: f.seed, DryRun: f.dryRun, Out: s.out, Sizes: map[string]uint64{}, Env: engine.HostEnv(nil)}
	for _, d := range f.devices {
		t, err := engine.ParseTarget(d)
		if err != nil {
			return opts, err
		}
		opts.Targets = append(opts.Targets, t)
	}
	for _, sz := range f.sizes {
		t, err := engine.ParseTarget(sz)
		if err != nil || t.SizeBytes == 0 {
			return opts, engine.Usagef("--size %q: want NAME=SIZE, e.g. vda=20GiB", sz)
		}
		opts.Sizes[t.Name] = t.SizeBytes
	}
	if !f.dryRun {
		// A dry run's listing is the whole output; a real run reports its progress.
		opts.Events = engine.TextEvents(s.out)
	}
	if opts.Seed == "" {
		var err error
		if opts.Seed, err = engine.NewSeed(); err != nil {
			return opts, err
		}
	}
	return opts, nil
}

// load reads SPEC (warnings to standard error) and builds the engine's options.
func (f *diskFlags) load(s *streams, path string) (*schema.Spec, engine.PartitionOptions, error) {
	spec, warns, err := readSpec(s, path)
	printWarnings(s.err, warns)
	if err != nil {
		return nil, engine.PartitionOptions{}, reportText(s.err, err)
	}
	opts, err := f.options(s)
	return spec, opts, err
}

// finish reports a run: every problem of a spec or layout error at its pointer, or,
// after a real run, the table of what was written.
func (f *diskFlags) finish(s *streams, layout *partition.Layout, err error) error {
	if err != nil {
		if _, ok := problemsOf(err); ok {
			return reportText(s.err, err)
		}
		return err
	}
	if f.dryRun {
		return nil
	}
	return layout.WriteTable(s.out)
}

func newPartitionCmd(s *streams) *cobra.Command {
	var flags diskFlags
	cmd := &cobra.Command{
		Use:   "partition SPEC [--device NAME=PATH ...] [--size NAME=SIZE ...] [--seed S] [--dry-run]",
		Short: "Partition the spec's disks and make their filesystems (no images yet)",
		Long: `partition validates SPEC, finds and probes its disks, plans the layout, and applies it
with the spec's partitions_policy:

  clean (the default; Bareon defaulted to verify)
      wipe the named disks and create everything: GPT, md raid1, LVM, filesystems with
      their planned UUIDs and labels. LVM and md on disks the spec does not name are
      left alone.
  verify
      the disks must already hold the planned layout (partitions and logical volumes
      within 1 MiB): on a mismatch it fails naming the first difference and writes
      nothing; on a match it re-creates only filesystems without keep_data.
  nailgun_legacy
      as Bareon: with any keep_data, like verify; without, like clean.

Every validation, probe and planning error is found before the first write. A disk that
has a mounted partition, active swap or holders (device-mapper, md) is refused, naming
what holds it; each disk is locked (flock) for the whole run.

--device maps a disk of the spec (by its id value) to a block device or a disk-image file;
a disk-image file is attached to a free loop device while it is written. A missing
image file is created sparse when --size gives its size. Without --device a disk is found
on this machine by its spec id (name, path, by-id, scsi, serial or wwn).
--dry-run prints the plan and every step a real run would take, and touches nothing.`,
		Example: `  provisioner partition examples/two-disks-shared.json --device vda=vda.img --device vdb=vdb.img --size vda=10GiB --size vdb=8GiB
  provisioner partition provision.json --dry-run`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			spec, opts, err := flags.load(s, args[0])
			if err != nil {
				return err
			}
			layout, err := engine.Partition(cmd.Context(), spec, opts)
			if err == nil && !flags.dryRun {
				fmt.Fprintln(s.out) // after the step lines, before the table
			}
			return flags.finish(s, layout, err)
		},
	}
	flags.bind(cmd)
	return cmd
}
