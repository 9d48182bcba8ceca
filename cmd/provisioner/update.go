package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"

	"github.com/provisioner/provisioner/internal/engine"
	"github.com/provisioner/provisioner/partition"
	"github.com/spf13/cobra"
)

func newUpdateCmd(s *streams) *cobra.Command {
	var (
		devices []string
		yes     bool
		o       engine.UpdateOptions
	)
	cmd := &cobra.Command{
		Use:   "update SPEC [--device NAME=PATH ...] [--yes] [--force] [--remove-data] [--tries N | --no-trial] [--prober P]",
		Short: "Apply a changed spec to a deployed node: only what changed, one commit at the end",
		Long: `update compares SPEC with the deployed node as plan --against does, prints the
break-down, asks on a terminal unless --yes, then applies only what changed: volumes
added and grown in place (the kept ones untouched, with their UUIDs), the updated images
reloaded (their own filesystems re-created, keep_data and shared ones kept), the added
images deployed, removed images' entries dropped from the menu (their volumes are left
as they are, unless --remove-data), and one commit of the menu, boot-info.json, the plan record, the history and
grubenv at the end. When the default image is rewritten, the default first moves to an
image the update leaves alone, and the new default then boots on trial (--tries, default
` + fmt.Sprint(engine.DefaultTries) + `) with that image to fall back to; --no-trial makes it the default at once.

Refused before anything is written, naming each image or volume: what plan --against
refuses (exit 3), an image whose image_uuid and digest are already deployed (a no-op) or
an older image_name than the deployed one (a downgrade), unless --force (exit 3). The
same spec applied twice says "nothing to do" and writes nothing.

On the node, SPEC's own disks and the running system's boot files are used; offline,
--device NAME=PATH maps the spec's disk (one disk) to a block device or disk-image file.`,
		Example: `  provisioner update /etc/provisioner/provision.json
  provisioner update spec.json --device vda=disk.img --yes`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			spec, warns, err := readSpec(s, args[0])
			printWarnings(s.err, warns)
			if err != nil {
				return reportText(s.err, err)
			}
			for _, d := range devices {
				t, err := engine.ParseTarget(d)
				if err != nil {
					return err
				}
				o.Against.Targets = append(o.Against.Targets, t)
			}
			setUpdateOutput(s, &o)
			o.Confirm = confirmUpdate(s, yes)
			res, err := engine.Update(cmd.Context(), spec, o)
			return reportUpdate(s, res, err)
		},
	}
	cmd.Flags().StringArrayVar(&devices, "device", nil, "NAME=PATH: the spec's disk as a block device or disk-image file (offline)")
	cmd.Flags().BoolVarP(&yes, "yes", "y", false, "apply without asking")
	cmd.Flags().BoolVar(&o.Against.RemoveData, "remove-data", false, "destroy the volumes of images the spec removed (default: leave them as they are)")
	cmd.Flags().BoolVar(&o.Force, "force", false, "also apply images already deployed (no-ops) and downgrades")
	cmd.Flags().IntVar(&o.Tries, "tries", 0, fmt.Sprintf("boot a rewritten default image on trial this many times before grub rolls back (default %d)", engine.DefaultTries))
	cmd.Flags().BoolVar(&o.NoTrial, "no-trial", false, "make a rewritten default image the default at once, without a trial")
	cmd.Flags().StringVar(&o.Boot.Prober, "prober", "", "kernel discovery: auto, os-prober or builtin (default: the one the deploy used)")
	return cmd
}

// setUpdateOutput sends the update's progress, log and transfer lines to standard error.
func setUpdateOutput(s *streams, o *engine.UpdateOptions) {
	o.Against.BootDir = engine.BootDirOptions{Env: engine.HostEnv(nil), LockWait: defaultLockWait}
	o.Against.Note = func(n string) { fmt.Fprintf(s.err, "note: %s\n", n) }
	o.Boot.Self = []string{"/proc/self/exe"}
	o.ImageRun = imageRunOn(s.err)
}

// imageRunOn sends a run's progress, log and transfer lines to w (a terminal redraws the
// transfer line).
func imageRunOn(w io.Writer) engine.ImageRun {
	r := engine.ImageRun{Log: slog.New(slog.NewTextHandler(w, nil)), Out: w, Events: engine.TextEvents(w)}
	if f, ok := w.(*os.File); ok {
		r.TTY = isTerminal(f)
	}
	return r
}

// confirmUpdate prints the break-down and asks on a terminal; with --yes, or without a
// terminal to ask on (standard input not one), it only prints. Without --yes, a
// non-terminal standard input is refused rather than taken as a yes.
func confirmUpdate(s *streams, yes bool) func(*partition.Breakdown) (bool, error) {
	return func(b *partition.Breakdown) (bool, error) {
		if err := b.WriteText(s.out); err != nil {
			return false, err
		}
		if yes {
			return true, nil
		}
		f, ok := s.in.(*os.File)
		if !ok || !isTerminal(f) {
			return false, engine.Usagef("update: standard input is not a terminal to ask on: give --yes to apply the break-down above")
		}
		return askYes(s.out, s.in, "apply these changes? [y/N] ")
	}
}

// askYes prints question and reads a line: y or yes (any case) is a yes.
func askYes(w io.Writer, r io.Reader, question string) (bool, error) {
	fmt.Fprint(w, question)
	line, err := bufio.NewReader(r).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return false, err
	}
	a := strings.ToLower(strings.TrimSpace(line))
	return a == "y" || a == "yes", nil
}

// reportUpdate prints what the update did: nothing to do, cancelled, refused (the
// break-down with its reasons), or applied with the trial armed.
func reportUpdate(s *streams, res *engine.UpdateResult, err error) error {
	var refused *partition.RefusedError
	switch {
	case res != nil && errors.As(err, &refused):
		if werr := res.Breakdown.WriteText(s.out); werr != nil {
			return werr
		}
		fmt.Fprintf(s.err, "provisioner: update: refused (%d problem(s), listed with the break-down); nothing is written\n", len(refused.Problems))
		return &reportedError{err}
	case err != nil:
		return err
	case res.Breakdown.NothingToDo:
		fmt.Fprintf(s.out, "%s\nnothing written\n", res.Breakdown.Summary)
	case res.Cancelled:
		fmt.Fprintln(s.out, "update cancelled: nothing written")
	case res.Trial != "":
		fmt.Fprintf(s.out, "updated: %s boots next on trial (%d tries); provisioner confirm once it runs healthy\n", res.Trial, res.Tries)
	default:
		def := ""
		for _, e := range res.BootInfo.Elements {
			if e.GrubID == res.BootInfo.CurrentElement {
				def = e.OSID
			}
		}
		fmt.Fprintf(s.out, "updated: the default is %s\n", def)
	}
	return nil
}
