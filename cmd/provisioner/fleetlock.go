package main

import "github.com/spf13/cobra"

// fleetlockClientCmds build the FleetLock client's subcommands (lock, unlock); the file
// that defines them appends to it from an init function, so the parent command does not
// depend on which of its subcommands are compiled in.
var fleetlockClientCmds []func(*streams) *cobra.Command

func newFleetlockCmd(s *streams) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "fleetlock",
		Short: "Fleet-wide reboot coordination (FleetLock): the lock server and its tools",
		Long: `fleetlock speaks FleetLock, the HTTP protocol with which the nodes of a fleet take a
reboot slot of their group before rebooting and release it once their new OS is
confirmed, so that at most a group's number of slots are down at once.

serve runs the lock server on etcd; status lists the groups and their holders; release
frees a holder's slot by hand.`,
	}
	cmd.AddCommand(newFleetlockServeCmd(s), newFleetlockStatusCmd(s), newFleetlockReleaseCmd(s))
	for _, build := range fleetlockClientCmds {
		cmd.AddCommand(build(s))
	}
	return cmd
}
