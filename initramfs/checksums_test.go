package initramfs

import (
	"crypto/sha256"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// TestWriteChecksums: SHA256SUMS lists both files by base name with their digests, in a
// form sha256sum -c accepts, and replaces an older file.
func TestWriteChecksums(t *testing.T) {
	dir := t.TempDir()
	k, i := filepath.Join(dir, "vmlinuz"), filepath.Join(dir, "initramfs.cpio.zst")
	for p, data := range map[string]string{k: "kernel bytes", i: "archive bytes"} {
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, ChecksumsName), []byte("stale\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := WriteChecksums(dir, k, i); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(filepath.Join(dir, ChecksumsName))
	want := fmt.Sprintf("%x  vmlinuz\n%x  initramfs.cpio.zst\n", sha256.Sum256([]byte("kernel bytes")), sha256.Sum256([]byte("archive bytes")))
	if err != nil || string(got) != want {
		t.Fatalf("SHA256SUMS (%v):\n%s\nwant:\n%s", err, got, want)
	}
	if fi, err := os.Stat(filepath.Join(dir, ChecksumsName)); err != nil || fi.Mode().Perm() != 0o644 {
		t.Errorf("mode: %v %v", fi, err)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 3 {
		t.Errorf("%d entries: a temporary file left behind?", len(ents))
	}
	if bin, err := exec.LookPath("sha256sum"); err == nil {
		cmd := exec.Command(bin, "-c", ChecksumsName)
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("sha256sum -c: %v\n%s", err, out)
		}
	}
	if err := WriteChecksums(dir, filepath.Join(dir, "missing")); err == nil {
		t.Error("a missing file was summed")
	}
}
