package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/provisioner/provisioner/internal/engine"
	"github.com/provisioner/provisioner/internal/fleetlock"
	"github.com/spf13/cobra"
)

func init() {
	fleetlockClientCmds = append(fleetlockClientCmds, newFleetlockLockCmd, newFleetlockUnlockCmd)
}

// errNoServer is the refusal of fleetlock lock|unlock without a base URL.
var errNoServer = errors.New("no FleetLock server: give --fleetlock-url or base_url in the configuration file")

func newFleetlockLockCmd(s *streams) *cobra.Command {
	var f fleetlockFlags
	cmd := &cobra.Command{
		Use:   "lock [--fleetlock-url U] [--group G] [--id I] [--lock-timeout D]",
		Short: "Take this node's reboot slot (pre-reboot), waiting while the group is full",
		Long: `lock takes this node's reboot slot in its group (FleetLock pre-reboot), for scripts
that reboot by other means: it retries with growing waits while the group is full, for
--lock-timeout at most, and exits 3 without a slot in time. Taking a slot the node
already holds succeeds. The server, group and id come from the flags, else from the
node's configuration file (` + fleetlock.NodeConfigFile + `).`,
		Example: `  provisioner fleetlock lock --lock-timeout 10m && systemctl reboot`,
		Args:    exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			return slotVerb(cmd, s, &f, "lock", (*fleetlock.Client).Lock, "holding a reboot slot in group %q at %s as %s\n")
		},
	}
	f.bind(cmd)
	return cmd
}

func newFleetlockUnlockCmd(s *streams) *cobra.Command {
	var f fleetlockFlags
	cmd := &cobra.Command{
		Use:   "unlock [--fleetlock-url U] [--group G] [--id I] [--lock-timeout D]",
		Short: "Release this node's reboot slot (steady-state)",
		Long: `unlock releases this node's reboot slot in its group (FleetLock steady-state).
Releasing a slot the node does not hold succeeds. A server that cannot be reached or
fails is retried for --lock-timeout at most.`,
		Example: `  provisioner fleetlock unlock`,
		Args:    exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			return slotVerb(cmd, s, &f, "unlock", (*fleetlock.Client).Unlock, "released the reboot slot in group %q at %s of %s\n")
		},
	}
	f.bind(cmd)
	return cmd
}

// slotVerb runs fleetlock lock or unlock (name): it resolves the client from f, calls
// do with the lock timeout, and prints done with the group, the server and the id.
func slotVerb(cmd *cobra.Command, s *streams, f *fleetlockFlags, name string, do func(*fleetlock.Client, context.Context, time.Duration) error, done string) error {
	cl, timeout, err := f.client(cmd, s)
	if err != nil {
		return err
	}
	if cl == nil {
		return engine.Usagef("fleetlock %s: %w", name, errNoServer)
	}
	if err := do(cl, cmd.Context(), timeout); err != nil {
		return engine.Environmentf("%w", err)
	}
	fmt.Fprintf(s.out, done, groupName(cl), cl.BaseURL, cl.ID)
	return nil
}

// groupName is the group the client names, the default one when none is set.
func groupName(cl *fleetlock.Client) string {
	if cl.Group == "" {
		return fleetlock.DefaultGroup
	}
	return cl.Group
}
