package main

import "github.com/spf13/cobra"

// fleetlockClientCmds make the client's subcommands of fleetlock (lock, unlock).
var fleetlockClientCmds []func(*streams) *cobra.Command

// newFleetlockCmd is the parent of the FleetLock commands.
func newFleetlockCmd(s *streams) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "fleetlock",
		Short: "FleetLock reboot slots: take and release this node's slot",
		Args:  exactArgs(0),
	}
	for _, f := range fleetlockClientCmds {
		cmd.AddCommand(f(s))
	}
	return cmd
}
