//go:build integration

package integration

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/provisioner/provisioner/internal/run"
)

// dataDisk makes an ext4 disk-image file holding files (name → content) at its root,
// for a booted image to read images from (see mountData). mke2fs -d fills it without
// mounting anything on the host.
func dataDisk(t *testing.T, files map[string][]byte) string {
	t.Helper()
	dir := t.TempDir()
	src := filepath.Join(dir, "content")
	if err := os.Mkdir(src, 0o755); err != nil {
		t.Fatal(err)
	}
	// ext4's metadata and the journal take about 5%, plus a few MiB on a small disk.
	size := int64(32 << 20)
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(src, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
		size += int64(len(data)) * 11 / 10
	}
	img := filepath.Join(dir, "data.img")
	f, err := os.Create(img)
	if err != nil {
		t.Fatal(err)
	}
	err = f.Truncate(size)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatal(err)
	}
	if _, err := (run.Exec{}).Run(context.Background(), run.Cmd{Argv: []string{"mke2fs", "-F", "-q", "-t", "ext4", "-L", "testdata", "-d", src, img}}); err != nil {
		t.Fatalf("making the data disk %s: %v", img, err)
	}
	return img
}

// mountData is the command script's first line when the data disk is attached: it
// mounts the disk after the deployed one (vdb when one disk was deployed) read-only on
// /tmp/data (the root is mounted read-only; /tmp is a tmpfs), so the image's URLs are
// file:///tmp/data/<name>.
func mountData(dev string) string {
	return "mkdir -p /tmp/data && mount -t ext4 -o ro " + dev + " /tmp/data\n"
}
