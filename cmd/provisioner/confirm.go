package main

import (
	"fmt"

	"github.com/provisioner/provisioner/bootloader"
	"github.com/provisioner/provisioner/internal/engine"
	"github.com/provisioner/provisioner/internal/fleetlock"
	"github.com/spf13/cobra"
)

func newConfirmCmd(s *streams) *cobra.Command {
	var flags bootDirFlags
	var asJSON, release bool
	var fl fleetlockFlags
	cmd := &cobra.Command{
		Use:   "confirm [--json] [--fleetlock-release [--fleetlock-url U] [--group G] [--id I] [--lock-timeout D]] [--device PATH | --boot-dir DIR]",
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

--fleetlock-release then releases the node's FleetLock reboot slot (steady-state) when
the system runs confirmed: the trial was confirmed now, no trial is pending, or grub
rolled the trial back and the previous default runs. While a trial of another entry is
pending the slot stays held. The server, group and id come from the flags, else from
the node's configuration file (` + fleetlock.NodeConfigFile + `); without a server it
does nothing more. The trial is confirmed first, whatever the configuration holds. A
release the server does not take within --lock-timeout fails the command (exit 3). The
node tools' unit runs confirm --fleetlock-release at every boot.

` + bootDirHelp,
		Example: `  provisioner confirm
  provisioner confirm --fleetlock-release
  provisioner confirm --json
  provisioner confirm --device disk.img   # offline: only says what it finds`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			if fl.changed(cmd) && !release {
				return engine.Usagef("confirm: the FleetLock flags go with --fleetlock-release")
			}
			o, err := flags.options(true)
			if err != nil {
				return err
			}
			res, err := engine.Confirm(cmd.Context(), o)
			if err != nil {
				return err
			}
			if asJSON {
				if err := writeJSON(s.out, res); err != nil {
					return err
				}
			} else {
				fmt.Fprintln(s.out, res.Message)
			}
			if !release {
				return nil
			}
			return releaseAfterConfirm(cmd, s, &fl, res, asJSON)
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	cmd.Flags().BoolVar(&release, "fleetlock-release", false, "then release the node's FleetLock reboot slot when the system runs confirmed (needs a configured server; nothing without)")
	fl.bind(cmd)
	flags.bind(cmd)
	return cmd
}

// releaseAfterConfirm releases the node's reboot slot once confirm found the system
// running confirmed (everything but a trial of another entry pending), when a FleetLock
// server is configured; the notes go to standard error when standard output is JSON.
func releaseAfterConfirm(cmd *cobra.Command, s *streams, fl *fleetlockFlags, res bootloader.ConfirmResult, asJSON bool) error {
	// Read only now: a bad configuration must not keep a trial from being confirmed.
	sl, err := prepareSlot(cmd, s, fl)
	if err != nil || sl.cl == nil {
		return err
	}
	note := s.out
	if asJSON {
		note = s.err
	}
	if res.Outcome == bootloader.ConfirmNotOnTrial {
		fmt.Fprintf(note, "the reboot slot in group %q stays held: a trial of another entry is pending\n", groupName(sl.cl))
		return nil
	}
	if err := sl.cl.Unlock(cmd.Context(), sl.timeout); err != nil {
		return engine.Environmentf("%w", err)
	}
	fmt.Fprintf(note, "released the reboot slot in group %q at %s of %s\n", groupName(sl.cl), sl.cl.BaseURL, sl.cl.ID)
	return nil
}
