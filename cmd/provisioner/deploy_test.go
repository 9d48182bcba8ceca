package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestDeployHelp(t *testing.T) {
	r := runCLI(t, "", "deploy", "--help")
	for _, want := range []string{"Range", "checksum", "fstab", "Exit code 4", "Examples:"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("deploy --help lacks %q", want)
		}
	}
}

func TestDeployDryRun(t *testing.T) {
	img, hash := imageFile(t, 64<<20)
	before := hash()
	r := runCLI(t, smallSpec, "deploy", "-", "--device", "vda="+img, "--seed", "s", "--dry-run")
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	if hash() != before {
		t.Error("--dry-run changed the image")
	}
	for _, want := range []string{"dry run: 6 steps, nothing written", "then 1 image(s) would be deployed:", "a from http://x/a.tar into / (1 mounts), fstab written to /etc/fstab"} {
		if !strings.Contains(r.stderr+r.stdout, want) {
			t.Errorf("output lacks %q:\nstdout:\n%s\nstderr:\n%s", want, r.stdout, r.stderr)
		}
	}
}

// TestDeployImageErrorExitCode: an image that cannot be fetched is exit code 4, after
// the disk was partitioned (a loop-device test).
func TestDeployImageErrorExitCode(t *testing.T) {
	if testing.Short() || os.Geteuid() != 0 {
		t.Skip("loop-device test: needs root and no -short")
	}
	missing := filepath.Join(t.TempDir(), "nope.tar")
	spec := strings.Replace(smallSpec, "http://x/a.tar", "file://"+missing, 1)
	img := filepath.Join(t.TempDir(), "new.img")
	r := runCLI(t, spec, "deploy", "-", "--device", "vda="+img, "--size", "vda=64MiB", "--seed", "s")
	if r.code != exitImage || !strings.Contains(r.stderr, "provisioner: image a: ") || !strings.Contains(r.stderr, missing) {
		t.Errorf("exit %d, stderr:\n%s", r.code, r.stderr)
	}
}
