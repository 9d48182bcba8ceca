package deploy

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/provisioner/provisioner/partition"
)

func TestRemoveMountPoints(t *testing.T) {
	mounts := []partition.Mount{{Path: "/srv/data"}, {Path: "/srv/data/cache"}, {Path: "/opt"}}
	root := filepath.Join(t.TempDir(), "root")
	for _, d := range []string{"srv/data/cache", "opt"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	removeMountPoints(root, mounts)
	if _, err := os.Lstat(root); !os.IsNotExist(err) {
		t.Fatalf("the root and its empty mount points stay: %v", err)
	}

	// Something this deploy did not make keeps its directory, and so the root.
	for _, d := range []string{"srv/data", "opt"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(root, "opt", "left"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	removeMountPoints(root, mounts)
	if _, err := os.Lstat(filepath.Join(root, "srv")); !os.IsNotExist(err) {
		t.Errorf("empty srv stays: %v", err)
	}
	if _, err := os.Lstat(filepath.Join(root, "opt", "left")); err != nil {
		t.Errorf("a file the deploy did not make is gone: %v", err)
	}
}
