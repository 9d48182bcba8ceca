package disk

import (
	"os"
	"path/filepath"
	"testing"
)

// TestWriteZeroesSupported lays out sysfs as the kernel does, class/block/X a symlink
// into the device tree with a partition's directory inside its disk's, and checks that a
// partition answers with its disk's queue: a partition of a disk that zeroes ranges says
// yes (a raw image written there then skips its zero blocks), of one that does not, no.
func TestWriteZeroesSupported(t *testing.T) {
	sys := t.TempDir()
	for disk, max := range map[string]string{"loop7": "4294966784\n", "sda": "0\n"} {
		dir := filepath.Join(sys, "devices", "virtual", "block", disk)
		part := filepath.Join(dir, disk+"2")
		mustWrite(t, filepath.Join(dir, "queue", "write_zeroes_max_bytes"), max)
		mustWrite(t, filepath.Join(part, "partition"), "2\n")
		// A partition has no queue directory of its own; both are reached through class/block.
		for _, p := range []string{dir, part} {
			link := filepath.Join(sys, "class", "block", filepath.Base(p))
			os.MkdirAll(filepath.Dir(link), 0o755)
			rel, err := filepath.Rel(filepath.Dir(link), p)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink(rel, link); err != nil {
				t.Fatal(err)
			}
		}
	}
	s := Sys{SysRoot: sys}
	for dev, want := range map[string]bool{
		"/dev/loop7": true, "/dev/loop72": true, "/dev/sda": false, "/dev/sda2": false, "/dev/nvme0n1": false,
	} {
		if got := s.WriteZeroesSupported(dev); got != want {
			t.Errorf("WriteZeroesSupported(%s) = %v, want %v", dev, got, want)
		}
	}
}

func mustWrite(t *testing.T, path, data string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}
