package engine

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/provisioner/provisioner/deploy"
	"github.com/provisioner/provisioner/internal/confine"
	"github.com/provisioner/provisioner/partition"
	"github.com/provisioner/provisioner/schema"
)

// extractErr is what deploy.ExtractTar says about an archive of the given entries; cut
// drops that many bytes from its end.
func extractErr(t *testing.T, cut int, hdrs ...*tar.Header) error {
	t.Helper()
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for _, h := range hdrs {
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	_, err := deploy.ExtractTar(context.Background(), bytes.NewReader(b.Bytes()[:b.Len()-cut]), t.TempDir(), deploy.ExtractOptions{})
	if err == nil {
		t.Fatal("the archive extracted without an error")
	}
	return err
}

func TestExitCode(t *testing.T) {
	dir := &tar.Header{Name: "d/", Typeflag: tar.TypeDir, Mode: 0o755}
	for _, tt := range []struct {
		name string
		err  error
		want int
	}{
		{"success", nil, ExitOK},
		{"usage", Usagef("unknown flag"), ExitFailure},
		{"unclassified", errors.New("something else"), ExitFailure},
		{"invalid spec", fmt.Errorf("loading: %w", schema.ErrInvalid), ExitInvalidSpec},
		{"layout does not fit", fmt.Errorf("disk vda: %w", partition.ErrLayout), ExitInvalidSpec},
		{"environment", Environmentf("no disk vda"), ExitEnvironment},
		{"disks do not match", fmt.Errorf("verify: %w", partition.ErrMismatch), ExitEnvironment},
		{"changed spec refused", &partition.RefusedError{Problems: []partition.Refusal{{Volume: "vda#5", Reason: "has keep_data"}}}, ExitEnvironment},
		{"image", fmt.Errorf("image a: %w", deploy.ErrImage), ExitImage},
		{"hostile entry", fmt.Errorf("image a: %w", &deploy.HostileEntryError{Entry: "../x", Reason: "climbs"}), ExitImage},
		{"checksum", fmt.Errorf("image a: %w", &deploy.ChecksumError{Source: "a", Algo: "sha256"}), ExitImage},
		{"tar without its end marker", extractErr(t, 1024, dir), ExitImage},
		{"a symlink loop", extractErr(t, 0,
			&tar.Header{Name: "a", Typeflag: tar.TypeSymlink, Linkname: "b"},
			&tar.Header{Name: "b", Typeflag: tar.TypeSymlink, Linkname: "a"},
			&tar.Header{Name: "a/x", Typeflag: tar.TypeReg, Mode: 0o644}), ExitImage},
		{"a file where a directory is expected", extractErr(t, 0,
			&tar.Header{Name: "f", Typeflag: tar.TypeReg, Mode: 0o644},
			&tar.Header{Name: "f/x", Typeflag: tar.TypeReg, Mode: 0o644}), ExitImage},
		{"a huge uid", extractErr(t, 0, &tar.Header{Name: "f", Typeflag: tar.TypeReg, Uid: 1 << 40, Format: tar.FormatPAX}), ExitImage},
		{"write failure (partitioning)", fmt.Errorf("applying: %w", ErrWrite), ExitWrite},
		{"write failure (an image)", fmt.Errorf("image a: %w", deploy.ErrWrite), ExitWrite},
		{"write failure, wrapped by a printer", &wrapped{fmt.Errorf("image a: %w", deploy.ErrWrite)}, ExitWrite},
		{"unsafe boot file", fmt.Errorf("switch: %w", &confine.UnsafeError{Path: "grub/grubenv", Reason: "a symlink"}), ExitImage},
		{"interrupted before writing", &InterruptedError{Cause: errors.New("SIGTERM"), Step: PhasePlan, Err: fmt.Errorf("x: %w", deploy.ErrImage)}, ExitFailure},
		{"interrupted after writing", &InterruptedError{Cause: errors.New("SIGTERM"), Step: PhaseImages, Written: true, Err: errors.New("cut")}, ExitWrite},
	} {
		if got := ExitCode(tt.err); got != tt.want {
			t.Errorf("%s: ExitCode(%v) = %d, want %d", tt.name, tt.err, got, tt.want)
		}
	}
}

// wrapped stands for an error type of another package that wraps a classified error
// (the CLI's "already printed" wrapper): the class must show through.
type wrapped struct{ err error }

func (w *wrapped) Error() string { return w.err.Error() }
func (w *wrapped) Unwrap() error { return w.err }
