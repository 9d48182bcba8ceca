package main

import (
	"archive/tar"
	"bytes"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/provisioner/provisioner/internal/engine"
)

func TestDeployHelp(t *testing.T) {
	r := runCLI(t, "", "deploy", "--help")
	for _, want := range []string{"Range", "checksum", "fstab", "Exit code 4", "Examples:"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("deploy --help lacks %q", want)
		}
	}
}

// TestDeployImagesPerDiskFlag: --images-per-disk below 1 is a usage error (exit 1),
// refused before the spec is read.
func TestDeployImagesPerDiskFlag(t *testing.T) {
	for _, n := range []string{"0", "-1"} {
		r := runCLI(t, smallSpec, "deploy", "-", "--device", "vda=/nonexistent.img", "--images-per-disk", n)
		if r.code != engine.ExitFailure || !strings.Contains(r.stderr, "--images-per-disk "+n+": want 1 or more") {
			t.Errorf("--images-per-disk %s: exit %d, stderr %q; want 1 and the flag named", n, r.code, r.stderr)
		}
	}
	r := runCLI(t, "", "deploy", "--help")
	if !strings.Contains(r.stdout, "--images-per-disk int") || !strings.Contains(r.stdout, "(default 2)") {
		t.Errorf("deploy --help lacks --images-per-disk and its default:\n%s", r.stdout)
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
	if r.code != engine.ExitImage || !strings.Contains(r.stderr, "provisioner: image a: ") || !strings.Contains(r.stderr, missing) {
		t.Errorf("exit %d, stderr:\n%s", r.code, r.stderr)
	}
}

// kernelTar writes a tar with a root tree (os-release, a kernel and initrd; not real
// ones: nothing boots them here) and returns its path.
func kernelTar(t *testing.T, dir, name string) string {
	t.Helper()
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for _, f := range []struct{ name, body string }{
		{"etc/os-release", `PRETTY_NAME="Test ` + name + `"` + "\n"},
		{"boot/vmlinuz-6.1.0-9-amd64", "kernel"},
		{"boot/initrd.img-6.1.0-9-amd64", "initrd"},
	} {
		tw.WriteHeader(&tar.Header{Name: f.name, Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(f.body)), ModTime: time.Unix(1, 0)})
		tw.Write([]byte(f.body))
	}
	tw.Close()
	p := filepath.Join(dir, name+".tar")
	if err := os.WriteFile(p, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// twoImageSpec is a BIOS spec of two OS images (red, the default, and blue, "Blue OS") on
// one disk vda of at least 400 MiB, fetched from the two URLs.
func twoImageSpec(red, blue string) string {
	return fmt.Sprintf(`{"images": [
   {"name": "red", "url": "%s", "target": "/", "boot": true},
   {"name": "blue", "image_name": "Blue OS", "url": "%s", "target": "/"}],
 "boot_mode": "bios",
 "partitions": [{"type": "disk", "id": {"type": "name", "value": "vda"}, "volumes": [
  {"type": "partition", "mount": "/", "file_system": "ext4", "size": "100 MiB", "images": ["red"]},
  {"type": "partition", "mount": "/", "file_system": "ext4", "size": "remaining", "images": ["blue"]}]}]}`, red, blue)
}

// TestDeployThenSwitchOffline: deploy two images into an image file through the CLI, then
// list, switch-default and history against that file (--device), as an operator would
// with a disk image (a loop-device test).
func TestDeployThenSwitchOffline(t *testing.T) {
	if testing.Short() || os.Geteuid() != 0 {
		t.Skip("loop-device test: needs root and no -short")
	}
	dir := t.TempDir()
	spec := twoImageSpec("file://"+kernelTar(t, dir, "red"), kernelTar(t, dir, "blue"))
	img := filepath.Join(dir, "disk.img")
	info := filepath.Join(dir, "boot-info.json")
	r := runCLI(t, spec, "deploy", "-", "--device", "vda="+img, "--size", "vda=400MiB", "--seed", "s", "--prober", "builtin", "--boot-info", info)
	if r.code != 0 {
		t.Fatalf("deploy: exit %d\n%s", r.code, r.stderr)
	}
	for _, want := range []string{"boot menu (multiboot partition ", " * 0  red ", "   1  blue ", "Test blue (blue)", "boot-info.json written to " + info,
		"durations:\n  plan ", "\n    red ", "\n  bootloader ", "\n    grub install ", "(BIOS ", "\n  total "} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("deploy output lacks %q:\n%s", want, r.stdout)
		}
	}
	if _, err := os.Stat(info); err != nil {
		t.Error(err)
	}

	r = runCLI(t, "", "switch-default", "Blue OS", "--device", img)
	if r.code != 0 || r.stdout != "default is now 1 (blue) (was 0 (red))\n" {
		t.Fatalf("switch-default: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	r = runCLI(t, "", "list", "--device", img)
	if r.code != 0 || !strings.Contains(r.stdout, "(multiboot)") || !strings.Contains(strings.Join(strings.Fields(r.stdout), " "), "1 blue Blue OS Test blue (blue) default") {
		t.Errorf("list: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	r = runCLI(t, "", "history", "--device", img)
	if r.code != 0 || !strings.Contains(r.stdout, " deploy ") || !regexp.MustCompile(`switch-default \S+ red( \([^)]*\))? -> blue( \([^)]*\))? ok`).MatchString(strings.Join(strings.Fields(r.stdout), " ")) {
		t.Errorf("history: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	r = runCLI(t, "", "switch-default", "green", "--device", img)
	if r.code != engine.ExitFailure || !strings.Contains(r.stderr, "valid: 0 (red); 1 (blue, Blue OS)") {
		t.Errorf("unknown entry: exit %d\n%s", r.code, r.stderr)
	}
}

// entry is one member of a test archive: its header (Size is set from body) and data.
type entry struct {
	hdr  tar.Header
	body string
}

func file(name, body string) entry {
	return entry{tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o644}, body}
}

func link(name, target string) entry {
	return entry{tar.Header{Name: name, Typeflag: tar.TypeSymlink, Linkname: target, Mode: 0o777}, ""}
}

func dir(name string) entry {
	return entry{tar.Header{Name: name, Typeflag: tar.TypeDir, Mode: 0o755}, ""}
}

// tarBytes archives the entries with archive/tar; with marker false the end-of-archive
// marker is left out, as if the stream had been cut between entries.
func tarBytes(t *testing.T, marker bool, entries ...entry) []byte {
	t.Helper()
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for _, e := range entries {
		h := e.hdr
		h.Size = int64(len(e.body))
		h.ModTime = time.Unix(1, 0)
		if err := tw.WriteHeader(&h); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(e.body)); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Flush(); err != nil {
		t.Fatal(err)
	}
	if marker {
		if err := tw.Close(); err != nil {
			t.Fatal(err)
		}
	}
	return b.Bytes()
}

// TestDeployTruncatedTarExitCode: a tar cut at an entry boundary, with nothing else to
// tell the cut (no Content-Length, a local file, a whole zstd frame around it), fails
// the image with exit code 4, though what arrived would boot (a loop-device test).
func TestDeployTruncatedTarExitCode(t *testing.T) {
	if testing.Short() || os.Geteuid() != 0 {
		t.Skip("loop-device test: needs root and no -short")
	}
	cut := tarBytes(t, false,
		file("etc/os-release", `PRETTY_NAME="Test cut"`+"\n"),
		file("boot/vmlinuz-6.1.0-9-amd64", "kernel"),
		file("boot/initrd.img-6.1.0-9-amd64", "initrd"))
	var zst bytes.Buffer
	zw, err := zstd.NewWriter(&zst)
	if err != nil {
		t.Fatal(err)
	}
	zw.Write(cut)
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	tmp := t.TempDir()
	files := map[string][]byte{"cut.tar": cut, "cut.tar.zst": zst.Bytes()}
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(tmp, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// No Content-Length: the body is sent chunked and ends cleanly where the tar was cut.
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusOK)
		w.(http.Flusher).Flush()
		w.Write(cut)
	}))
	defer srv.Close()
	for _, tc := range []struct{ name, url string }{
		{"http without Content-Length", srv.URL + "/cut.tar"},
		{"file URL", "file://" + filepath.Join(tmp, "cut.tar")},
		{"whole zstd frame", "file://" + filepath.Join(tmp, "cut.tar.zst")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			spec := strings.Replace(smallSpec, "http://x/a.tar", tc.url, 1)
			img := filepath.Join(t.TempDir(), "new.img")
			// The builtin prober: os-prober would run this test binary as its confined child.
			r := runCLI(t, spec, "deploy", "-", "--device", "vda="+img, "--size", "vda=64MiB", "--seed", "s", "--prober", "builtin", "--boot-info", "")
			if r.code != engine.ExitImage || !strings.Contains(r.stderr, "the tar ends after 3 entries without its end-of-archive marker") {
				t.Errorf("exit %d, stderr:\n%s", r.code, r.stderr)
			}
		})
	}
}

// TestDeployFailureExitCodes: archives the target tree cannot take are image errors
// (exit 4, naming the entry); a target filesystem that fills up is a write failure
// (exit 5) (a loop-device test).
func TestDeployFailureExitCodes(t *testing.T) {
	if testing.Short() || os.Geteuid() != 0 {
		t.Skip("loop-device test: needs root and no -short")
	}
	big := make([]byte, 24<<20)            // more than the 16 MiB root holds
	rand.NewChaCha8([32]byte{5}).Read(big) // no zero blocks: nothing becomes a hole
	for _, tc := range []struct {
		name    string
		archive []byte
		code    int
		want    string
	}{
		{"symlink loop", tarBytes(t, true, link("a", "b"), link("b", "a"), file("a/x", "x")),
			engine.ExitImage, `extracting "a/x": `},
		{"non-empty directory in the way", tarBytes(t, true, dir("d/"), file("d/f", "f"), file("d", "d")),
			engine.ExitImage, `extracting "d": a non-empty directory is in the way`},
		{"full target filesystem", tarBytes(t, true, file("big", string(big))),
			engine.ExitWrite, "no space left on device"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tmp := t.TempDir()
			p := filepath.Join(tmp, "image.tar")
			if err := os.WriteFile(p, tc.archive, 0o644); err != nil {
				t.Fatal(err)
			}
			spec := strings.Replace(strings.Replace(smallSpec, "http://x/a.tar", "file://"+p, 1), `"size": "remaining"`, `"size": "16 MiB"`, 1)
			img := filepath.Join(tmp, "disk.img")
			r := runCLI(t, spec, "deploy", "-", "--device", "vda="+img, "--size", "vda=64MiB", "--seed", "s", "--prober", "builtin", "--boot-info", "")
			if r.code != tc.code || !strings.Contains(r.stderr, tc.want) {
				t.Errorf("exit %d (want %d), stderr:\n%s", r.code, tc.code, r.stderr)
			}
		})
	}
}
