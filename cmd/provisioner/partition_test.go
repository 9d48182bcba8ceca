package main

import (
	"crypto/sha256"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/provisioner/provisioner/internal/engine"
)

// smallSpec fits a 64 MiB disk: BIOS boot and one root partition.
const smallSpec = `{"images": [{"name": "a", "url": "http://x/a.tar", "target": "/", "boot": true}], "boot_mode": "bios",
 "partitions": [{"type": "disk", "id": {"type": "name", "value": "vda"}, "volumes": [
  {"type": "partition", "mount": "/", "file_system": "ext4", "size": "remaining"}]}]}`

func imageFile(t *testing.T, size int64) (string, func() string) {
	t.Helper()
	img := filepath.Join(t.TempDir(), "vda.img")
	if err := os.WriteFile(img, []byte(strings.Repeat("old data ", 1000)), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(img, size); err != nil {
		t.Fatal(err)
	}
	hash := func() string {
		b, err := os.ReadFile(img)
		if err != nil {
			t.Fatal(err)
		}
		return fmt.Sprintf("%x", sha256.Sum256(b))
	}
	return img, hash
}

func TestPartitionHelp(t *testing.T) {
	r := runCLI(t, "", "partition", "--help")
	for _, want := range []string{"clean (the default; Bareon defaulted to verify)", "verify", "nailgun_legacy", "--dry-run", "Examples:"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("partition --help lacks %q", want)
		}
	}
}

// TestPartitionFailuresWriteNothing: a bad spec and a layout that does not fit are
// found before the first write; the image's bytes do not change.
func TestPartitionFailuresWriteNothing(t *testing.T) {
	img, hash := imageFile(t, 64<<20)
	before := hash()
	for _, tc := range []struct {
		name  string
		stdin string
		args  []string
		code  int
		head  string
	}{
		{"bad spec", badSpec, []string{"partition", "-", "--device", "vda=" + img}, engine.ExitInvalidSpec, "/images/0/bogus"},
		{"does not fit", "", []string{"partition", example, "--device", "vda=" + img}, engine.ExitInvalidSpec, "/partitions/0: disk vda: the partitions need"},
		// vda is also this machine's own disk on some hosts: the usage error must come
		// before any disk of the spec is looked for.
		{"unknown disk", smallSpec, []string{"partition", "-", "--device", "vdz=" + img}, engine.ExitFailure, "provisioner: --device vdz: the spec has no disk"},
		{"unknown --size", smallSpec, []string{"partition", "-", "--device", "vda=" + img, "--size", "vdz=1GiB"}, engine.ExitFailure, "provisioner: --size vdz"},
		{"size instead of a path", smallSpec, []string{"partition", "-", "--device", "vda=10GiB"}, engine.ExitFailure, "provisioner: --device vda: partition needs a device"},
		{"missing file, no --size", smallSpec, []string{"partition", "-", "--device", "vda=" + img + ".new"}, engine.ExitEnvironment, "provisioner: disk vda: " + img + ".new does not exist (give --size vda=SIZE"},
		{"bad --size", smallSpec, []string{"partition", "-", "--device", "vda=" + img, "--size", "vda"}, engine.ExitFailure, "provisioner: --size"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := runCLI(t, tc.stdin, tc.args...)
			if r.code != tc.code || !strings.HasPrefix(r.stderr, tc.head) {
				t.Errorf("exit %d, stderr %q; want %d, %q", r.code, r.stderr, tc.code, tc.head)
			}
			if hash() != before {
				t.Fatal("the image changed")
			}
		})
	}
	if _, err := os.Stat(img + ".new"); !os.IsNotExist(err) {
		t.Error("a failed run created an image file")
	}
}

func TestPartitionDryRun(t *testing.T) {
	img, hash := imageFile(t, 64<<20)
	before := hash()
	r := runCLI(t, smallSpec, "partition", "-", "--device", "vda="+img, "--seed", "s", "--dry-run")
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	if hash() != before {
		t.Error("--dry-run changed the image")
	}
	for _, want := range []string{
		"disk vda: " + img + " would be attached to a free loop device, shown as /dev/loopX",
		"dry run: 6 steps, nothing written",
		"2. write GPT on /dev/loopX: 2 partitions",
		"6. run: mke2fs -F -q -t ext4 -U ",
	} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("output lacks %q:\n%s", want, r.stdout)
		}
	}
}

// TestPartitionWritesImage is a loop-device test of the whole command on a new file.
func TestPartitionWritesImage(t *testing.T) {
	if testing.Short() || os.Geteuid() != 0 {
		t.Skip("loop-device test: needs root and no -short")
	}
	img := filepath.Join(t.TempDir(), "new.img")
	r := runCLI(t, smallSpec, "partition", "-", "--device", "vda="+img, "--size", "vda=64MiB", "--seed", "s")
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	for _, want := range []string{"applying partitions_policy \"clean\": 6 steps", "[6/6] run: mke2fs", "disk vda (" + img + "): 64 MiB"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("output lacks %q:\n%s", want, r.stdout)
		}
	}
	if fi, err := os.Stat(img); err != nil || fi.Size() != 64<<20 {
		t.Errorf("image: %v, %v", fi, err)
	}
}
