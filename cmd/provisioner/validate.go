package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/provisioner/provisioner/internal/engine"
	"github.com/provisioner/provisioner/partition"
	"github.com/provisioner/provisioner/schema"
	"github.com/spf13/cobra"
)

func newValidateCmd(s *streams) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "validate SPEC",
		Short: "Check a provision.json against the schema and the layout rules",
		Long: `validate checks SPEC (a path, or - for standard input) against the JSON schema and the
semantic rules (image bindings, mounts, sizes, LVM and RAID references). It reports every
problem at once, one per line, each starting with its JSON pointer; past 100, the first 100
and a last line saying how many more. A key given twice in one object is an error, and a
document beyond the bounds (64 images, 64 disks and vgs, 128 volumes in one, 1024 in all...)
gets that one error.

Exit 0 when valid (warnings go to standard error), 2 when not.`,
		Example: `  provisioner validate examples/multiboot-two-images.json
  curl -s http://conductor/node/provision.json | provisioner validate --json -`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			spec, warns, err := readSpec(s, args[0])
			if asJSON {
				return reportJSON(s.out, warns, err)
			}
			printWarnings(s.err, warns)
			if err != nil {
				return reportText(s.err, err)
			}
			images, disks, vgs := counts(spec)
			fmt.Fprintf(s.out, "%s: valid (%d image(s), %d disk(s), %d volume group(s))\n", args[0], images, disks, vgs)
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print problems as a JSON array of {severity, pointer, message}")
	return cmd
}

func counts(spec *schema.Spec) (images, disks, vgs int) {
	for i := range spec.Partitions {
		switch spec.Partitions[i].Type {
		case schema.KindDisk:
			disks++
		case schema.KindVG:
			vgs++
		}
	}
	return len(spec.Images), disks, vgs
}

func printWarnings(w io.Writer, warns []schema.Problem) {
	for _, p := range warns {
		fmt.Fprintf(w, "warning: %s\n", p)
	}
}

// problemsOf returns the pointer-located problems carried by a spec or layout error.
func problemsOf(err error) ([]schema.Problem, bool) {
	var ve *schema.ValidationError
	if errors.As(err, &ve) {
		return ve.Problems, true
	}
	var le *partition.LayoutError
	if errors.As(err, &le) {
		return le.Problems, true
	}
	return nil, false
}

// reportText prints each problem on its own line, starting with its JSON pointer.
func reportText(w io.Writer, err error) error {
	ps, ok := problemsOf(err)
	if !ok {
		return err
	}
	for _, p := range ps {
		fmt.Fprintln(w, p)
	}
	return &reportedError{err}
}

type jsonProblem struct {
	Severity string `json:"severity"`
	Pointer  string `json:"pointer"`
	Message  string `json:"message"`
}

// reportJSON prints errors and warnings as one JSON array on standard output.
func reportJSON(w io.Writer, warns []schema.Problem, err error) error {
	out := []jsonProblem{}
	ps, ok := problemsOf(err)
	if err != nil && !ok {
		return err
	}
	for _, p := range ps {
		out = append(out, jsonProblem{"error", p.Pointer, p.Message})
	}
	for _, p := range warns {
		out = append(out, jsonProblem{"warning", p.Pointer, p.Message})
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if e := enc.Encode(out); e != nil {
		return e
	}
	if err != nil {
		return &reportedError{err}
	}
	return nil
}

// exactArgs is cobra.ExactArgs with an error that maps to the usage exit code.
func exactArgs(n int) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if err := cobra.ExactArgs(n)(cmd, args); err != nil {
			return engine.Usagef("%w (see %s --help)", err, cmd.CommandPath())
		}
		return nil
	}
}
