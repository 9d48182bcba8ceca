package main

import "github.com/spf13/cobra"

// fleetlockClientCmds make the FleetLock client's subcommands (lock, unlock); the file
// that defines them appends to it from an init function, so the parent command does not
// depend on which of its subcommands are compiled in.
var fleetlockClientCmds []func(*streams) *cobra.Command

// newFleetlockCmd is the parent of the FleetLock commands: the server's, and the
// client's from fleetlockClientCmds.
func newFleetlockCmd(s *streams) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "fleetlock",
		Short: "FleetLock reboot slots: take and release this node's slot, run the lock server",
		Long: `fleetlock speaks FleetLock, the HTTP protocol with which the nodes of a fleet take a
reboot slot of their group before rebooting and release it once their new OS is
confirmed, so that at most a group's number of slots are down at once.

lock and unlock take and release this node's slot (for scripts; reboot, switch-default
--reboot, reload --reboot and confirm do it themselves when a FleetLock server is
configured); serve runs the lock server on etcd; status lists the groups and their
holders; release frees a holder's slot by hand.`,
		Args: exactArgs(0),
	}
	cmd.AddCommand(newFleetlockServeCmd(s), newFleetlockStatusCmd(s), newFleetlockReleaseCmd(s))
	for _, build := range fleetlockClientCmds {
		cmd.AddCommand(build(s))
	}
	return cmd
}
