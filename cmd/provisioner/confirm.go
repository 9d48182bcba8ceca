package main

import (
	"fmt"

	"github.com/provisioner/provisioner/internal/engine"
	"github.com/spf13/cobra"
)

func newConfirmCmd(s *streams) *cobra.Command {
	var flags bootDirFlags
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "confirm [--json] [--device PATH | --boot-dir DIR]",
		Short: "Make the entry booted on trial the default, from inside it",
		Long: `confirm ends a trial boot (after a reload): run inside the system that booted on trial
(recognised by its root filesystem's UUID), it makes that entry the default, clears the
trial and records it in the history. Until then grub boots the entry on trial at most
its number of tries, then the previous default again by itself.

Run anywhere else (another entry, or offline with --device or --boot-dir, where nothing
is booted from the boot files) it changes nothing and says what it found: no trial, or a
trial of another entry and its tries left. When grub has rolled a trial back, confirm
records that, once, and says which trial failed after how many boots and what boots now.
It exits 0 in every one of these cases.

` + bootDirHelp,
		Example: `  provisioner confirm
  provisioner confirm --json
  provisioner confirm --device disk.img   # offline: only says what it finds`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			o, err := flags.options(true)
			if err != nil {
				return err
			}
			res, err := engine.Confirm(cmd.Context(), o)
			if err != nil {
				return err
			}
			if asJSON {
				return writeJSON(s.out, res)
			}
			fmt.Fprintln(s.out, res.Message)
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	flags.bind(cmd)
	return cmd
}
