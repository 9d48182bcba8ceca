package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/provisioner/provisioner/internal/engine"
	"github.com/provisioner/provisioner/partition"
	"github.com/provisioner/provisioner/schema"
	"github.com/spf13/cobra"
)

func newPlanCmd(s *streams) *cobra.Command {
	var (
		devices    []string
		seed       string
		asJSON     bool
		against    bool
		removeData bool
	)
	cmd := &cobra.Command{
		Use:   "plan SPEC [--device NAME=SIZE|PATH ...] [--against]",
		Short: "Print the exact disk layout a spec gives, touching no disk",
		Long: `plan validates SPEC and lays it out: every GPT partition with its first and last
sector, type, GUID, filesystem UUID and label, the md arrays and volume groups, and each
image's mounts and fstab. Nothing is written anywhere.

--device maps a disk of the spec (by its id value, e.g. vda) to a simulated size
(20GiB, or 2TB:4096 for 4096-byte sectors) or to a block device or disk-image file whose
size is read. A disk without --device is planned from the spec's own "size".
--seed makes every GUID and UUID reproducible; without it a random seed is chosen and
printed.

--against compares SPEC with a deployed node instead and prints what applying it would
do: each partition and logical volume kept, created, grown, re-created or destroyed
(with the data it loses), each image unchanged, updated, added or removed, the boot
menu's changes and default, and each disk drawn before and after. On the node it reads
the spec's own disks and the running system's boot files; offline, --device NAME=PATH
maps the spec's disks to block devices or disk-image files, as for deploy, and the boot
files are found on them. It reads the deploy's record, boot-info.json, grubenv and the
partition tables; a checksum URL of an image is fetched, as a deploy would. Nothing is
written. Exit 0 when the spec can be applied; a spec that cannot (keep_data would lose
data, or the partitions policy cannot make the change in place) prints the break-down
with every reason and exits 3.`,
		Example: `  provisioner plan examples/multiboot-two-images.json --device vda=20GiB --seed demo
  provisioner plan spec.json --device vda=/dev/nvme0n1 --device vdb=disk.img --json
  provisioner plan spec.json --against
  provisioner plan spec.json --against --device vda=disk.img --json`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if against && seed != "" {
				return engine.Usagef("--seed and --against exclude each other: --against compares with the deployed disks, whose UUIDs are the deploy's")
			}
			spec, warns, err := readSpec(s, args[0])
			if err != nil {
				if asJSON {
					return reportJSON(s.out, warns, err)
				}
				printWarnings(s.err, warns)
				return reportText(s.err, err)
			}
			printWarnings(s.err, warns)
			var targets []engine.Target
			for _, d := range devices {
				t, err := engine.ParseTarget(d)
				if err != nil {
					return err
				}
				targets = append(targets, t)
			}
			if against {
				return planAgainst(cmd.Context(), s, spec, targets, asJSON, removeData)
			}
			if seed == "" {
				if seed, err = engine.NewSeed(); err != nil {
					return err
				}
			}
			layout, err := engine.PlanSpec(cmd.Context(), spec, targets, seed)
			if err != nil {
				if _, ok := problemsOf(err); ok {
					if asJSON {
						return reportJSON(s.out, nil, err)
					}
					return reportText(s.err, err)
				}
				return err
			}
			if asJSON {
				return writeJSON(s.out, layout)
			}
			return layout.WriteTable(s.out)
		},
	}
	cmd.Flags().StringArrayVar(&devices, "device", nil, "NAME=SIZE[:SECTOR] or NAME=PATH for a disk of the spec (repeatable)")
	cmd.Flags().StringVar(&seed, "seed", "", "seed for every GUID and UUID (default: random, printed)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the full plan (or the problems, or the break-down) as JSON")
	cmd.Flags().BoolVar(&removeData, "remove-data", false, "with --against: break down the volumes of removed images as destroyed, as update --remove-data does (default: left alone)")
	cmd.Flags().BoolVar(&against, "against", false, "compare with the deployed node (its disks, or those of --device) and print what would change")
	return cmd
}

// planAgainst prints the break-down of applying spec to the deployed node. A refused
// spec's break-down is printed too, with its reasons; the refusal then selects the exit
// code without being printed again.
func planAgainst(ctx context.Context, s *streams, spec *schema.Spec, targets []engine.Target, asJSON, removeData bool) error {
	o := engine.AgainstOptions{
		Targets: targets, RemoveData: removeData,
		BootDir: engine.BootDirOptions{Env: engine.HostEnv(nil), LockWait: defaultLockWait},
		Note:    func(n string) { fmt.Fprintf(s.err, "note: %s\n", n) },
	}
	b, err := engine.PlanAgainst(ctx, spec, o)
	if b == nil {
		return err
	}
	if asJSON {
		if werr := b.WriteJSON(s.out); werr != nil {
			return werr
		}
	} else if werr := b.WriteText(s.out); werr != nil {
		return werr
	}
	var refused *partition.RefusedError
	if errors.As(err, &refused) {
		fmt.Fprintf(s.err, "provisioner: plan --against: refused (%d problem(s), listed with the break-down); nothing is written\n", len(refused.Problems))
		return &reportedError{err}
	}
	return err
}
