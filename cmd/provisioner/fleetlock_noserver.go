//go:build nofleetlockserver

package main

import (
	"fmt"

	"github.com/spf13/cobra"
)

// This binary is built with the tag nofleetlockserver (the deploy ramdisk's, and so the
// node tools a deploy from it copies): the server's subcommands would link etcd's client
// and gRPC, about 12 MB, which no node needs. Their names stay, and say where they are.
func init() {
	for _, name := range []string{"serve", "status", "release"} {
		fleetlockServerCmds = append(fleetlockServerCmds, func(*streams) *cobra.Command {
			return noServerCmd(name)
		})
	}
}

// noServerCmd stands in for the server's subcommand name: it takes any arguments and
// flags and fails with the reason.
func noServerCmd(name string) *cobra.Command {
	return &cobra.Command{
		Use:                name,
		Short:              "Not in this build: the FleetLock server's commands are in the full binary (make build)",
		DisableFlagParsing: true,
		RunE: func(*cobra.Command, []string) error {
			return fmt.Errorf("fleetlock %s: this provisioner was built without the FleetLock server "+
				"(build tag nofleetlockserver, as the deploy ramdisk's and the node tools' binary are): "+
				"run it from the full binary (make build)", name)
		},
	}
}
