package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/provisioner/provisioner/deploy"
	"github.com/provisioner/provisioner/internal/confine"
	"github.com/provisioner/provisioner/internal/engine"
	"github.com/provisioner/provisioner/partition"
	"github.com/provisioner/provisioner/schema"
	"github.com/spf13/cobra"
)

// Exit codes are part of the interface: a conductor branches on them.
const (
	exitOK          = 0
	exitFailure     = 1 // usage errors and anything unclassified
	exitInvalidSpec = 2 // the spec is invalid or its layout does not fit
	exitEnvironment = 3 // a device, file or tool is missing, or the disks do not match (verify)
	exitImage       = 4 // an image could not be fetched, verified, read or extracted
	exitWrite       = 5 // writing a disk failed part-way, or a target filesystem filled up
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
	code := exitCode(err)
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

// exitCode maps the class of err (the sentinel it matches) to the process's exit code.
func exitCode(err error) int {
	switch {
	case err == nil:
		return exitOK
	case errors.Is(err, engine.ErrInterrupted):
		// Whatever the interrupted step reported (a cut download is no image error):
		// 5 once the disks were written, else 1.
		if errors.Is(err, engine.ErrWrite) {
			return exitWrite
		}
		return exitFailure
	case errors.Is(err, schema.ErrInvalid), errors.Is(err, partition.ErrLayout):
		return exitInvalidSpec
	case errors.Is(err, deploy.ErrImage), errors.Is(err, confine.ErrUnsafe):
		// A symlink, device node or FIFO where an image root or the boot files should hold
		// a regular file or directory: only a hostile image or a tampered disk does that.
		return exitImage
	case errors.Is(err, engine.ErrWrite):
		return exitWrite
	case errors.Is(err, engine.ErrEnvironment), errors.Is(err, partition.ErrMismatch):
		return exitEnvironment
	}
	return exitFailure
}

func newRoot(s *streams) *cobra.Command {
	root := &cobra.Command{
		Use:   "provisioner",
		Short: "Bare-metal image provisioner: one provision.json, several OS images, one grub",
		Long: `provisioner reads a provision.json (Bareon's Ironic-driver format plus our extensions),
validates it strictly, plans the whole disk layout before touching any disk, and deploys it.

Exit codes: 0 ok, 1 usage, 2 invalid spec or layout that does not fit, 3 missing
device, file or tool, busy disk, or disks that do not match (verify), 4 an image that
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
		newListCmd(s), newSwitchDefaultCmd(s), newHistoryCmd(s), newConfinedProberCmd(),
		newAgentCmd(s), newRamdiskBootCmd(s))
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

// randomSeed picks a seed when the user gives none, so two machines never share UUIDs.
func randomSeed() (string, error) {
	b := make([]byte, 8)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("choosing a seed: %w", err)
	}
	return hex.EncodeToString(b), nil
}
