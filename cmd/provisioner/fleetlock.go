package main

import (
	"slices"

	"github.com/spf13/cobra"
)

// fleetlockClientCmds make the FleetLock client's subcommands (lock, unlock); the file
// that defines them appends to it from an init function, so the parent command does not
// depend on which of its subcommands are compiled in.
var fleetlockClientCmds []func(*streams) *cobra.Command

// fleetlockServerCmds make the FleetLock server's subcommands (serve, status, release),
// appended from an init function likewise: by fleetlock_server.go in the full binary, by
// fleetlock_noserver.go (build tag nofleetlockserver) with commands that only say the
// binary was built without them, so that the ramdisk's and the node tools' binary links
// no etcd client.
var fleetlockServerCmds []func(*streams) *cobra.Command

// newFleetlockCmd is the parent of the FleetLock commands: the server's from
// fleetlockServerCmds and the client's from fleetlockClientCmds.
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
holders; release frees a holder's slot by hand. serve, status and release are in the
full binary (make build) only: the deploy ramdisk's binary, and the node tools a deploy
from it copies, are built without them (build tag nofleetlockserver) and without etcd.`,
		Args: exactArgs(0),
	}
	for _, build := range slices.Concat(fleetlockServerCmds, fleetlockClientCmds) {
		cmd.AddCommand(build(s))
	}
	return cmd
}
