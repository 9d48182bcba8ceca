package main

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/provisioner/provisioner/deploy"
	"github.com/provisioner/provisioner/internal/engine"
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
		{"success", nil, exitOK},
		{"usage", engine.Usagef("unknown flag"), exitFailure},
		{"unclassified", errors.New("something else"), exitFailure},
		{"invalid spec", fmt.Errorf("loading: %w", schema.ErrInvalid), exitInvalidSpec},
		{"layout does not fit", fmt.Errorf("disk vda: %w", partition.ErrLayout), exitInvalidSpec},
		{"environment", engine.Environmentf("no disk vda"), exitEnvironment},
		{"disks do not match", fmt.Errorf("verify: %w", partition.ErrMismatch), exitEnvironment},
		{"image", fmt.Errorf("image a: %w", deploy.ErrImage), exitImage},
		{"hostile entry", fmt.Errorf("image a: %w", &deploy.HostileEntryError{Entry: "../x", Reason: "climbs"}), exitImage},
		{"checksum", fmt.Errorf("image a: %w", &deploy.ChecksumError{Source: "a", Algo: "sha256"}), exitImage},
		{"tar without its end marker", extractErr(t, 1024, dir), exitImage},
		{"a symlink loop", extractErr(t, 0,
			&tar.Header{Name: "a", Typeflag: tar.TypeSymlink, Linkname: "b"},
			&tar.Header{Name: "b", Typeflag: tar.TypeSymlink, Linkname: "a"},
			&tar.Header{Name: "a/x", Typeflag: tar.TypeReg, Mode: 0o644}), exitImage},
		{"a file where a directory is expected", extractErr(t, 0,
			&tar.Header{Name: "f", Typeflag: tar.TypeReg, Mode: 0o644},
			&tar.Header{Name: "f/x", Typeflag: tar.TypeReg, Mode: 0o644}), exitImage},
		{"a huge uid", extractErr(t, 0, &tar.Header{Name: "f", Typeflag: tar.TypeReg, Uid: 1 << 40, Format: tar.FormatPAX}), exitImage},
		{"write failure (partitioning)", fmt.Errorf("applying: %w", engine.ErrWrite), exitWrite},
		{"write failure (an image)", fmt.Errorf("image a: %w", deploy.ErrWrite), exitWrite},
		{"write failure, already reported", &reportedError{fmt.Errorf("image a: %w", deploy.ErrWrite)}, exitWrite},
	} {
		if got := exitCode(tt.err); got != tt.want {
			t.Errorf("%s: exitCode(%v) = %d, want %d", tt.name, tt.err, got, tt.want)
		}
	}
}
