package main

import (
	"github.com/provisioner/provisioner/internal/engine"
	"github.com/spf13/cobra"
)

func newPlanCmd(s *streams) *cobra.Command {
	var (
		devices []string
		seed    string
		asJSON  bool
	)
	cmd := &cobra.Command{
		Use:   "plan SPEC --device NAME=SIZE|PATH ...",
		Short: "Print the exact disk layout a spec gives, touching no disk",
		Long: `plan validates SPEC and lays it out: every GPT partition with its first and last
sector, type, GUID, filesystem UUID and label, the md arrays and volume groups, and each
image's mounts and fstab. Nothing is written anywhere.

--device maps a disk of the spec (by its id value, e.g. vda) to a simulated size
(20GiB, or 2TB:4096 for 4096-byte sectors) or to a block device or disk-image file whose
size is read. A disk without --device is planned from the spec's own "size".
--seed makes every GUID and UUID reproducible; without it a random seed is chosen and
printed.`,
		Example: `  provisioner plan examples/multiboot-two-images.json --device vda=20GiB --seed demo
  provisioner plan spec.json --device vda=/dev/nvme0n1 --device vdb=disk.img --json`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
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
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the full plan (or the problems) as JSON")
	return cmd
}
