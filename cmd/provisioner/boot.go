package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/provisioner/provisioner/bootloader"
	"github.com/provisioner/provisioner/internal/engine"
	"github.com/spf13/cobra"
)

// bootDirFlags are the flags list, switch-default and history share: where the boot
// files are.
type bootDirFlags struct {
	device, dir string
	lockWait    time.Duration
}

// defaultLockWait is how long list, switch-default and history wait for another run's
// lock by default: long enough for a switch or a list, short of a whole deploy.
const defaultLockWait = 30 * time.Second

func (f *bootDirFlags) bind(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.device, "device", "", "look in this disk, partition or disk-image file (offline) instead of the running system")
	cmd.Flags().StringVar(&f.dir, "boot-dir", "", "use the boot files in this directory (one holding boot-info.json)")
	cmd.Flags().DurationVar(&f.lockWait, "lock-wait", defaultLockWait, "wait this long for another run holding the boot files (0: do not wait)")
}

// options are the engine's options for the boot files the flags name.
func (f *bootDirFlags) options(writable bool) (engine.BootDirOptions, error) {
	if f.lockWait < 0 {
		return engine.BootDirOptions{}, engine.Usagef("--lock-wait %v: want a duration of 0 or more", f.lockWait)
	}
	return engine.BootDirOptions{Dir: f.dir, Device: f.device, Writable: writable, Env: engine.HostEnv(nil), LockWait: f.lockWait}, nil
}

// open finds, locks and, if needed, mounts the boot files.
func (f *bootDirFlags) open(ctx context.Context, writable bool) (*engine.BootDir, error) {
	o, err := f.options(writable)
	if err != nil {
		return nil, err
	}
	return engine.OpenBootDir(ctx, o)
}

// withBootDir runs fn on the opened boot directory and always closes it; a failure to
// close (unmount, detach) is reported when fn succeeded.
func (f *bootDirFlags) withBootDir(ctx context.Context, writable bool, fn func(*engine.BootDir) error) (err error) {
	bd, err := f.open(ctx, writable)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := bd.Close(context.WithoutCancel(ctx)); cerr != nil && err == nil {
			err = cerr
		}
	}()
	return fn(bd)
}

const bootDirHelp = `The boot files are found on the running system: the multiboot partition (by its label,
used where it is mounted or mounted privately for the moment), or /boot of a single-image
node. --device PATH looks in a disk, partition or disk-image file instead (offline; an
image file is attached to a loop device), --boot-dir DIR in a directory.

The disk or image file and then the boot directory are locked (flock) while the command
runs, exclusively by switch-default and confirm, shared by list and history (exclusively
while they record a rollback grub made), as a deploy locks its disks: a command finding
them locked by another run waits --lock-wait (30s by default), then fails with exit code
3, having changed nothing. An image file attached to a loop
device with a mounted partition is refused (use --boot-dir with its mount point).`

// listJSON is list --json's document.
type listJSON = engine.BootDocument

func newListCmd(s *streams) *cobra.Command {
	var flags bootDirFlags
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "list [--json] [--device PATH | --boot-dir DIR]",
		Short: "List the boot entries: the default, the one booted now, a pending one-shot or trial",
		Long: `list prints the deployed images' boot entries from boot-info.json and grubenv: each
entry's grub_id, os_id, image name and title; which entry grub boots next (a pending
one-shot entry, else an entry on trial with tries left, else the saved default); and, on
the running system, which entry is booted now (matched by the root filesystem's UUID).
When grubenv and boot-info.json disagree (a switch cut short by a power loss), it says
how; grubenv is what grub reads.

An entry on trial (after a reload) shows its tries left. When grub has rolled a trial
back, the first list, history or confirm after it says which trial failed after how many
boots and what boots now, and records it in the history, once (where the boot files
cannot be written, it is only shown).

` + bootDirHelp,
		Example: `  provisioner list
  provisioner list --json --device disk.img`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, args []string) error {
			o, err := flags.options(false)
			if err != nil {
				return err
			}
			l, err := engine.List(cmd.Context(), o)
			if err != nil {
				return err
			}
			if asJSON {
				return writeJSON(s.out, l.Document())
			}
			printList(s.out, l.Source, l.Status)
			printRollback(s.out, l.Rollback)
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	flags.bind(cmd)
	return cmd
}

func printList(w io.Writer, source string, st bootloader.Status) {
	fmt.Fprintf(w, "boot files: %s\n", source)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "GRUB_ID\tOS_ID\tIMAGE_NAME\tTITLE\tSTATE")
	for _, e := range st.Elements {
		var state []byte
		add := func(s string) {
			if len(state) > 0 {
				state = append(state, ", "...)
			}
			state = append(state, s...)
		}
		if e.GrubID == st.Saved {
			add("default")
		}
		if st.Pending != nil && *st.Pending == e.GrubID {
			add("next boot (once)")
		}
		if st.Trial != nil && st.Trial.GrubID == e.GrubID {
			add(trialState(st.Trial))
		}
		if st.Booted != nil && *st.Booted == e.GrubID {
			add("booted now")
		}
		switch e.State {
		case bootloader.ElementReloading:
			add("FAILED: a reload was cut short; its root may be half written")
		case bootloader.ElementFailed:
			add("FAILED: its last reload failed; its root may be half written")
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\n", e.GrubID, e.OSID, dash(e.ImageName), e.BootName, state)
	}
	tw.Flush()
	switch {
	case st.Pending != nil && *st.Pending == bootloader.RamdiskGrubID:
		fmt.Fprintln(w, "next boot (once): the deploy ramdisk kept on the multiboot partition (a reload through it is staged)")
	case st.Saved == bootloader.RamdiskGrubID:
		fmt.Fprintln(w, "default: the deploy ramdisk kept on the multiboot partition (the only image is being reloaded, or its trial failed)")
	}
	if st.Trial != nil && st.Trial.TriesLeft == 0 {
		fmt.Fprintf(w, "trial: no try left for %s: unless confirmed in it now, the next boot rolls back to %s\n", entryName(st, st.Trial.GrubID), entryName(st, st.Saved))
	}
	for _, e := range st.Elements {
		if e.State == bootloader.ElementFailed && e.StateError != "" {
			fmt.Fprintf(w, "reload of %s failed: %s\n", entryName(st, e.GrubID), e.StateError)
		}
	}
	if st.Mismatch != "" {
		fmt.Fprintf(w, "warning: %s\n", st.Mismatch)
	}
	if st.EnvError != "" {
		fmt.Fprintf(w, "warning: %s; grub boots its fallback entry (marked default above), and switch-default writes a valid grubenv\n", st.EnvError)
	}
}

// trialState is the STATE of an entry on trial.
func trialState(t *bootloader.TrialStatus) string {
	if t.Tries > 0 {
		return fmt.Sprintf("on trial (%d of %d tries left)", t.TriesLeft, t.Tries)
	}
	return fmt.Sprintf("on trial (%d tries left)", t.TriesLeft)
}

// entryName is "1 (tiny-b)" for the entry grubID of st.
func entryName(st bootloader.Status, grubID int) string {
	if grubID == bootloader.RamdiskGrubID {
		return "the deploy ramdisk"
	}
	for _, e := range st.Elements {
		if e.GrubID == grubID {
			return fmt.Sprintf("%d (%s)", grubID, e.OSID)
		}
	}
	return fmt.Sprint(grubID)
}

// printRollback says what list or history found of a rollback grub made.
func printRollback(w io.Writer, rb *engine.Rollback) {
	switch {
	case rb == nil:
	case rb.Recorded:
		fmt.Fprintf(w, "rollback: %s (recorded in the history)\n", rb.Message)
	default:
		fmt.Fprintf(w, "rollback: %s (not recorded: %s)\n", rb.Message, rb.NotRecorded)
	}
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func newSwitchDefaultCmd(s *streams) *cobra.Command {
	var flags bootDirFlags
	var once, reboot bool
	var fl fleetlockFlags
	cmd := &cobra.Command{
		Use:   "switch-default GRUB_ID|NAME [--once] [--reboot [--fleetlock-url U] [--group G] [--id I] [--lock-timeout D]] [--device PATH | --boot-dir DIR]",
		Short: "Make another deployed image boot next (permanently, or once)",
		Long: `switch-default makes the entry GRUB_ID (its index in the menu, as in boot-info.json) or
NAME (an image's name, i.e. its os_id, or its image_name) the default: it sets
saved_entry in grubenv, then current_element in boot-info.json. With --once it sets
next_entry instead, which grub clears when it boots it, so the following boot returns to
the default; boot-info.json records it as pending_once and current_element stays.

A permanent switch cancels a pending trial boot; --once leaves it alone (the one-shot
entry boots once without taking one of its tries).

Each file is replaced whole (a temporary file, fsync, rename, fsync of the directory),
so a power loss at any moment leaves each one either old or new, never torn. An unknown
id or name changes nothing and lists the valid ones. Each switch is appended to the
history (provisioner history).

--reboot reboots the node once the switch is written, after taking a FleetLock reboot
slot when a server is configured (see provisioner reboot); without a slot in time it
exits 3 without rebooting, and the switch stays written: it takes effect at the next
boot, whenever that comes.

` + bootDirHelp,
		Example: `  provisioner switch-default 1 --reboot
  provisioner switch-default 1
  provisioner switch-default centos --once
  provisioner switch-default ubuntu --device disk.img`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			if fl.changed(cmd) && !reboot {
				return engine.Usagef("switch-default: the FleetLock flags go with --reboot")
			}
			var sl slot
			if reboot {
				var err error
				if sl, err = prepareSlot(cmd, s, &fl); err != nil {
					return err
				}
			}
			err := flags.withBootDir(ctx, true, func(bd *engine.BootDir) error {
				return switchDefault(ctx, s, bd, args[0], once)
			})
			if err != nil || !reboot {
				return err
			}
			return sl.reboot(ctx, s, false, "the switch stays written and takes effect at the next boot")
		},
	}
	cmd.Flags().BoolVar(&once, "once", false, "boot the entry at the next boot only (grub's next_entry)")
	cmd.Flags().BoolVar(&reboot, "reboot", false, "reboot once the switch is written, after taking a FleetLock reboot slot when a server is configured")
	fl.bind(cmd)
	flags.bind(cmd)
	return cmd
}

// switchDefault switches the default entry of the boot files bd to entry (for the next
// boot only with once) and says what it did.
func switchDefault(ctx context.Context, s *streams, bd *engine.BootDir, entry string, once bool) error {
	res, err := bootloader.SwitchDefault(ctx, bd.Path, bootloader.SwitchOptions{Entry: entry, Once: once})
	if errors.Is(err, bootloader.ErrUnknownEntry) {
		return engine.Usagef("%w", err)
	}
	if err != nil {
		return classifyBootErr(err)
	}
	if res.EnvRewritten != "" {
		fmt.Fprintf(s.err, "warning: %s: replaced by a valid one\n", res.EnvRewritten)
	}
	if res.NotedRollback != nil {
		fmt.Fprintf(s.out, "rollback: %s (recorded in the history)\n", res.NotedRollback.Detail)
	}
	to := fmt.Sprintf("%d (%s)", res.To.GrubID, res.To.OSID)
	from := fmt.Sprintf("%d (%s)", res.From.GrubID, res.From.OSID)
	switch {
	case res.Unchanged:
		fmt.Fprintf(s.out, "%s is already the default\n", to)
	case once:
		fmt.Fprintf(s.out, "%s boots once, at the next boot; then %s again\n", to, from)
	default:
		fmt.Fprintf(s.out, "default is now %s (was %s)\n", to, from)
	}
	if c := res.CancelledTrial; c != nil {
		fmt.Fprintf(s.out, "the trial of %d (%s) is cancelled\n", c.GrubID, c.OSID)
	}
	return nil
}

// classifyBootErr marks unreadable boot files as an environment problem (exit 3).
func classifyBootErr(err error) error {
	return engine.Environmentf("%w", err)
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// newConfinedProberCmd is the hidden command deploy re-executes in a private mount
// namespace to run os-prober on the given roots only (a /boot volume as boot=DEV).
func newConfinedProberCmd() *cobra.Command {
	return &cobra.Command{
		Use:    bootloader.ConfinedProberArg + " ROOT... [boot=DEV...]",
		Hidden: true,
		Args:   cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return bootloader.ConfinedProberMain(cmd.Context(), engine.HostEnv(nil).Run, args, cmd.OutOrStdout())
		},
	}
}
