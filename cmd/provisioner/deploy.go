package main

import (
	"log/slog"
	"os"

	"github.com/provisioner/provisioner/deploy"
	"github.com/provisioner/provisioner/internal/engine"
	"github.com/spf13/cobra"
)

func newDeployCmd(s *streams) *cobra.Command {
	var flags diskFlags
	cmd := &cobra.Command{
		Use:   "deploy SPEC [--device NAME=PATH ...] [--size NAME=SIZE ...] [--seed S] [--dry-run]",
		Short: "Partition the spec's disks and deploy every image into its root",
		Long: `deploy does everything partition does, then deploys each image: it mounts the volumes
bound to the image into a private temporary root (shallowest first), streams the image
(http, https, file:// or a path; retried, resumed with HTTP Range after a dropped
connection, its length checked against Content-Length), verifies its checksum while
streaming, and extracts it into the image's target (tar, tar.gz, tar.xz, tar.zst,
tar.bz2, detected from the data) or writes it block-wise (raw ext2/3/4 or xfs images, then
given the planned UUID and grown to the partition). It writes the image's /etc/fstab from
the plan and unmounts everything, also when something failed.

Extraction is confined to the image root: an entry with "..", a link leading out, or a
hard link to a file outside aborts the image, naming the entry. Owners, modes, setuid
bits, hard links, device nodes, FIFOs and xattrs (file capabilities, SELinux labels) are
kept.

Progress (bytes, rate, ETA) is a redrawn line on a terminal and a log line every few
seconds otherwise. Exit code 4 means an image could not be fetched or verified.`,
		Example: `  provisioner deploy examples/multiboot-two-images.json --device vda=disk.img --size vda=16GiB
  provisioner deploy provision.json --dry-run`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			spec, popts, err := flags.load(s, args[0])
			if err != nil {
				return err
			}
			tty := false
			if f, ok := s.err.(*os.File); ok {
				tty = deploy.IsTerminal(f)
			}
			opts := engine.DeployOptions{
				PartitionOptions: popts,
				TTY:              tty,
				Log:              slog.New(slog.NewTextHandler(s.err, nil)),
			}
			opts.Out = s.err // progress goes to standard error; the result table to standard output
			layout, err := engine.Deploy(cmd.Context(), spec, opts)
			return flags.finish(s, layout, err)
		},
	}
	flags.bind(cmd)
	return cmd
}
