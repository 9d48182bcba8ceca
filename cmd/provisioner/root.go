package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/provisioner/provisioner/internal/engine"
	"github.com/provisioner/provisioner/schema"
	"github.com/spf13/cobra"
)

// streams are the process's standard streams, injected so tests run the CLI in-process.
type streams struct {
	in       io.Reader
	out, err io.Writer
}

// run executes the command line and returns the exit code.
func run(args []string, in io.Reader, out, errw io.Writer) int {
	return runContext(context.Background(), args, in, out, errw)
}

// runContext is run under ctx: when ctx is cancelled (main cancels it on a signal) the
// command stops, cleans up and fails with an error that names the cause.
func runContext(ctx context.Context, args []string, in io.Reader, out, errw io.Writer) int {
	s := &streams{in: in, out: out, err: errw}
	root := newRoot(s)
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	code := engine.ExitCode(err)
	var reported *reportedError
	if err != nil && !errors.As(err, &reported) {
		fmt.Fprintf(errw, "provisioner: %v\n", err)
	}
	return code
}

// reportedError wraps an error whose details the command has already printed, so run
// does not print it twice; it still selects the exit code.
type reportedError struct{ err error }

func (r *reportedError) Error() string { return r.err.Error() }
func (r *reportedError) Unwrap() error { return r.err }

func newRoot(s *streams) *cobra.Command {
	root := &cobra.Command{
		Use:   "provisioner",
		Short: "Bare-metal image provisioner: one provision.json, several OS images, one grub",
		Long: `provisioner reads a provision.json (Bareon's Ironic-driver format plus our extensions),
validates it strictly, plans the whole disk layout before touching any disk, and deploys it.

Exit codes: 0 ok, 1 usage, 2 invalid spec or layout that does not fit, 3 missing
device, file or tool, busy disk, disks that do not match (verify), or a changed spec
the disks cannot take (plan --against), 4 an image that
cannot be fetched, verified, decompressed or extracted (truncated, corrupt, or holding
an entry the target tree cannot take), 5 a disk write failed part-way or a target
filesystem filled up or failed.

SIGTERM, SIGINT (^C) or SIGHUP stop a run where it stands and clean up as after a
failure: exit 1 when nothing was written yet, 5 after the first disk write. A second
signal exits at once (128 + the signal's number), without cleaning up.`,
		Example: `  provisioner validate provision.json
  provisioner plan provision.json --device vda=/dev/sda --seed node-42`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetIn(s.in)
	root.SetOut(s.out)
	root.SetErr(s.err)
	root.AddCommand(newValidateCmd(s), newPlanCmd(s), newPartitionCmd(s), newDeployCmd(s),
		newListCmd(s), newSwitchDefaultCmd(s), newHistoryCmd(s), newReloadCmd(s), newUpdateCmd(s), newConfirmCmd(s), newConfinedProberCmd(),
		newAgentCmd(s), newRamdiskBootCmd(s), newRebootCmd(s), newFleetlockCmd(s))
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return engine.Usagef("%w (see %s --help)", err, c.CommandPath())
	})
	return root
}

// readSpec opens SPEC ("-" is standard input) and loads it.
func readSpec(s *streams, path string) (*schema.Spec, []schema.Problem, error) {
	var r io.Reader = s.in
	if path != "-" {
		f, err := os.Open(path)
		if err != nil {
			return nil, nil, fmt.Errorf("reading spec: %w", err)
		}
		defer f.Close()
		r = f
	}
	return schema.Load(r)
}
