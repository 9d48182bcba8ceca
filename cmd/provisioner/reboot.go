package main

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/provisioner/provisioner/internal/bootflow"
	"github.com/provisioner/provisioner/internal/engine"
	"github.com/provisioner/provisioner/internal/fleetlock"
	"github.com/spf13/cobra"
)

// nodeReboot reboots this machine (into the kernel loaded for kexec with kexecLoaded);
// tests replace it, so that no test reboots the machine it runs on.
var nodeReboot = func(ctx context.Context, kexecLoaded bool) error {
	return bootflow.NodeReboot(ctx, engine.HostEnv(nil).Run, kexecLoaded)
}

// nodeIDSources are the files the node id derives from; tests point them elsewhere.
var nodeIDSources = fleetlock.DefaultIDSources

// fleetlockFlags are the FleetLock client's flags of every command that reboots (and of
// confirm and fleetlock lock|unlock): they override the node's configuration file.
type fleetlockFlags struct {
	config, url, group, id string
	timeout                time.Duration
}

func (f *fleetlockFlags) bind(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.StringVar(&f.config, "fleetlock-config", fleetlock.NodeConfigFile, "the node's FleetLock client configuration (TOML; a missing file configures nothing)")
	fl.StringVar(&f.url, "fleetlock-url", "", "the FleetLock server's base URL (default: base_url of --fleetlock-config; none: reboot without taking a slot)")
	fl.StringVar(&f.group, "group", "", "the FleetLock group (default: group of --fleetlock-config, else \"default\")")
	fl.StringVar(&f.id, "id", "", "the node's FleetLock id (default: id of --fleetlock-config, else derived from the SMBIOS system UUID or /etc/machine-id)")
	fl.DurationVar(&f.timeout, "lock-timeout", 0, fmt.Sprintf("keep trying this long at most: to take a slot while the group is full, to release one while the server cannot be reached (0: once; default: lock_timeout of --fleetlock-config, else %v)", fleetlock.DefaultLockTimeout))
}

// client reads the configuration file, applies the flags given and returns the client
// and the lock timeout; a nil client means no FleetLock base URL is configured.
func (f *fleetlockFlags) client(cmd *cobra.Command, s *streams) (*fleetlock.Client, time.Duration, error) {
	c, err := fleetlock.LoadNodeConfig(f.config)
	if err != nil {
		return nil, 0, engine.Environmentf("%w", err)
	}
	fl := cmd.Flags()
	if fl.Changed("fleetlock-url") {
		if err := fleetlock.CheckBaseURL(f.url); err != nil {
			return nil, 0, engine.Usagef("--fleetlock-url: %w", err)
		}
		c.BaseURL = f.url
	}
	if fl.Changed("group") {
		if !fleetlock.ValidGroup(f.group) {
			return nil, 0, engine.Usagef("--group %q: want letters, digits, '.' and '-' only", f.group)
		}
		c.Group = f.group
	}
	if fl.Changed("id") {
		if f.id == "" {
			return nil, 0, engine.Usagef("--id: want a non-empty id")
		}
		c.ID = f.id
	}
	timeout := c.Timeout()
	if fl.Changed("lock-timeout") {
		if f.timeout < 0 {
			return nil, 0, engine.Usagef("--lock-timeout %v: want 0 or more", f.timeout)
		}
		timeout = f.timeout // 0: one try
	}
	cl, err := c.Client(nodeIDSources)
	if err != nil {
		return nil, 0, engine.Environmentf("%w", err)
	}
	if cl != nil {
		cl.Log = slog.New(slog.NewTextHandler(s.err, nil))
	}
	return cl, timeout, nil
}

// changed reports whether a FleetLock flag was given.
func (f *fleetlockFlags) changed(cmd *cobra.Command) bool {
	for _, n := range []string{"fleetlock-config", "fleetlock-url", "group", "id", "lock-timeout"} {
		if cmd.Flags().Changed(n) {
			return true
		}
	}
	return false
}

// slot is a reboot's FleetLock client and lock timeout, resolved before the command
// changes anything (a bad flag or configuration file fails first); a nil client takes
// no slot.
type slot struct {
	cl      *fleetlock.Client
	timeout time.Duration
}

// prepareSlot resolves the reboot's slot.
func prepareSlot(cmd *cobra.Command, s *streams, f *fleetlockFlags) (slot, error) {
	cl, timeout, err := f.client(cmd, s)
	return slot{cl, timeout}, err
}

// reboot takes the node's reboot slot when a FleetLock server is configured, then
// reboots. staged says what stays staged when no slot is had in time: the command then
// fails (exit 3) without rebooting.
func (sl slot) reboot(ctx context.Context, s *streams, kexecLoaded bool, staged string) error {
	if sl.cl != nil {
		fmt.Fprintf(s.out, "taking a reboot slot in group %q at %s as %s (waiting %v at most)\n", groupName(sl.cl), sl.cl.BaseURL, sl.cl.ID, sl.timeout)
		if err := sl.cl.Lock(ctx, sl.timeout); err != nil {
			return engine.Environmentf("not rebooting, %s: %w", staged, err)
		}
		fmt.Fprintln(s.out, "reboot slot taken; provisioner confirm releases it once the rebooted node runs healthy")
	}
	fmt.Fprintln(s.out, "rebooting")
	return nodeReboot(ctx, kexecLoaded)
}

func newRebootCmd(s *streams) *cobra.Command {
	var f fleetlockFlags
	var kexec bool
	cmd := &cobra.Command{
		Use:   "reboot [--fleetlock-url U] [--group G] [--id I] [--lock-timeout D] [--kexec]",
		Short: "Reboot the node, after taking a FleetLock reboot slot when a server is configured",
		Long: `reboot reboots the node: through systemd where it runs (a clean shutdown), else
with reboot(2) after syncing. With --kexec it reboots into the kernel already loaded for
kexec (reload --via-ramdisk --kexec loads one).

With a FleetLock server configured (--fleetlock-url, or base_url in the node's
configuration file, ` + fleetlock.NodeConfigFile + `), it first takes a reboot slot in
the node's group, retrying with growing waits while the group is full, for
--lock-timeout at most; without a slot in time it exits 3 and does not reboot. The slot
is released by provisioner confirm once the rebooted node runs healthy. Without a
server it reboots at once.`,
		Example: `  provisioner reboot
  provisioner reboot --fleetlock-url http://fleetlock.example:8080 --group workers --lock-timeout 1h`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			sl, err := prepareSlot(cmd, s, &f)
			if err != nil {
				return err
			}
			return sl.reboot(cmd.Context(), s, kexec, "nothing changed")
		},
	}
	cmd.Flags().BoolVar(&kexec, "kexec", false, "reboot into the kernel loaded for kexec")
	f.bind(cmd)
	return cmd
}
