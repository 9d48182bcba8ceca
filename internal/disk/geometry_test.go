package disk

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestProbeImageFile(t *testing.T) {
	img := filepath.Join(t.TempDir(), "disk.img")
	f, err := os.Create(img)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(3<<30 + 512); err != nil {
		t.Fatal(err)
	}
	f.Close()
	g, err := Probe(context.Background(), img)
	if err != nil {
		t.Fatal(err)
	}
	if g.SizeBytes != 3<<30+512 || g.SectorSize != 512 || g.Block {
		t.Errorf("geometry = %+v", g)
	}
}

func TestProbeErrors(t *testing.T) {
	_, err := Probe(context.Background(), "/nonexistent/disk.img")
	if !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "/nonexistent/disk.img") {
		t.Error("missing file:", err)
	}
	if _, err := Probe(context.Background(), "/dev/null"); err == nil || !strings.Contains(err.Error(), "not a block device") {
		t.Error("character device:", err)
	}
	if _, err := Probe(context.Background(), t.TempDir()); err == nil {
		t.Error("a directory was accepted")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Probe(ctx, "/dev/null"); !errors.Is(err, context.Canceled) {
		t.Error("cancelled context:", err)
	}
}

// TestProbeLoopDevice is a loop-device test: it needs root and losetup, and attaches
// its own loop devices (never a fixed number), detaching them at the end.
func TestProbeLoopDevice(t *testing.T) {
	if testing.Short() {
		t.Skip("loop-device test skipped in -short mode")
	}
	if os.Geteuid() != 0 {
		t.Skip("loop-device test needs root")
	}
	if _, err := exec.LookPath("losetup"); err != nil {
		t.Skip("losetup not installed")
	}
	for _, lss := range []uint64{512, 4096} {
		img := filepath.Join(t.TempDir(), "disk.img")
		f, err := os.Create(img)
		if err != nil {
			t.Fatal(err)
		}
		if err := f.Truncate(64 << 20); err != nil {
			t.Fatal(err)
		}
		f.Close()
		out, err := exec.Command("losetup", "-f", "--show", "--sector-size", map[uint64]string{512: "512", 4096: "4096"}[lss], img).CombinedOutput()
		if err != nil {
			t.Fatalf("losetup: %v: %s", err, out)
		}
		dev := strings.TrimSpace(string(out))
		t.Cleanup(func() {
			if out, err := exec.Command("losetup", "-d", dev).CombinedOutput(); err != nil {
				t.Errorf("losetup -d %s: %v: %s", dev, err, out)
			}
		})
		g, err := Probe(context.Background(), dev)
		if err != nil {
			t.Fatal(err)
		}
		if !g.Block || g.SizeBytes != 64<<20 || g.SectorSize != lss {
			t.Errorf("%s (sector size %d): geometry = %+v", dev, lss, g)
		}
	}
}
