package bootloader

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/provisioner/provisioner/internal/confine"
)

// TestRenderRamdiskEntryGolden: ramdisk.cfg holds one entry with the ramdisk's id that
// boots the kept kernel and initramfs from the multiboot filesystem, every word quoted as
// Render quotes it, and passes grub-script-check.
func TestRenderRamdiskEntryGolden(t *testing.T) {
	e := RamdiskEntry{BootUUID: "7d0c3a4e-1b0f-5d5e-9c41-2a8f0e6b1c11",
		Args: []string{"console=ttyS0,115200n8", "quiet", `x="a b"`, "provisioner.spec=http://10.0.0.1/spec.json?a=1&b=2"}}
	got := RenderRamdiskEntry(e)
	golden := filepath.Join("testdata", "ramdisk.cfg")
	if *update {
		if err := os.WriteFile(golden, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("ramdisk.cfg differs from %s (run with -update if intended):\n%s", golden, got)
	}
	for _, s := range []string{
		"menuentry 'Provisioner ramdisk' --id 'provisioner-ramdisk' {\n",
		"\tsearch --no-floppy --fs-uuid --set=root 7d0c3a4e-1b0f-5d5e-9c41-2a8f0e6b1c11\n",
		"\tlinux /ramdisk/vmlinuz console=ttyS0,115200n8 quiet 'x=\"a b\"' 'provisioner.spec=http://10.0.0.1/spec.json?a=1&b=2'\n",
		"\tinitrd /ramdisk/initramfs.cpio.zst\n",
	} {
		if !strings.Contains(string(got), s) {
			t.Errorf("missing %q in\n%s", s, got)
		}
	}
	if n := strings.Count(string(got), "menuentry "); n != 1 {
		t.Errorf("%d menu entries", n)
	}
	scriptCheck(t, got)
	// grub.cfg and the sourced file together are one valid script.
	c := singleRamdiskConfig()
	scriptCheck(t, append(Render(c), got...))
}

// TestRamdiskWriteRead: WriteRamdiskEntry writes ramdisk.cfg where grub.cfg sources it,
// replacing an older one; ReadRamdisk reports the kept files' sizes and the base words, and
// ErrNoRamdisk when the kernel or the initramfs is missing.
func TestRamdiskWriteRead(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	if _, err := ReadRamdisk(dir); !errors.Is(err, ErrNoRamdisk) {
		t.Fatalf("empty dir: err = %v, want ErrNoRamdisk", err)
	}
	for _, e := range []RamdiskEntry{{BootUUID: "old", Args: []string{"quiet"}}, {BootUUID: "u1", Args: []string{"console=ttyS0"}}} {
		if err := WriteRamdiskEntry(ctx, dir, e); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile(filepath.Join(dir, DefaultGrubDir, "ramdisk.cfg"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, RenderRamdiskEntry(RamdiskEntry{BootUUID: "u1", Args: []string{"console=ttyS0"}})) {
		t.Errorf("ramdisk.cfg:\n%s", got)
	}
	if filepath.Join(DefaultGrubDir, ramdiskCfgName) != RamdiskCfgPath {
		t.Errorf("grub.cfg sources %s, the entry is written to %s", ramdiskCfgName, RamdiskCfgPath)
	}
	if err := os.MkdirAll(filepath.Join(dir, RamdiskDir), 0o755); err != nil {
		t.Fatal(err)
	}
	write := func(name string, data []byte) {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(RamdiskKernel, make([]byte, 1000))
	if _, err := ReadRamdisk(dir); !errors.Is(err, ErrNoRamdisk) || !strings.Contains(err.Error(), "initramfs.cpio.zst") {
		t.Fatalf("no initramfs: err = %v", err)
	}
	write(RamdiskInitrd, make([]byte, 2345))
	info, err := ReadRamdisk(dir)
	if err != nil || info.KernelBytes != 1000 || info.InitrdBytes != 2345 || info.Cmdline != nil {
		t.Fatalf("without cmdline: %+v, %v", info, err)
	}
	words := []string{"console=tty0", "console=ttyS0,115200n8", `x="a b"`}
	write(RamdiskCmdline, FormatRamdiskCmdline(words))
	if info, err = ReadRamdisk(dir); err != nil || !slices.Equal(info.Cmdline, words) {
		t.Fatalf("cmdline: %+v, %v", info, err)
	}
	// A symlink where the kernel belongs is refused, not followed.
	os.Remove(filepath.Join(dir, RamdiskKernel))
	if err := os.Symlink("/etc/passwd", filepath.Join(dir, RamdiskKernel)); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadRamdisk(dir); !errors.Is(err, confine.ErrUnsafe) {
		t.Errorf("symlinked kernel: err = %v, want ErrUnsafe", err)
	}
	// A symlinked grub directory is refused for the entry too.
	other := t.TempDir()
	if err := os.MkdirAll(filepath.Join(other, "boot"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/tmp", filepath.Join(other, "boot", "grub")); err != nil {
		t.Fatal(err)
	}
	if err := WriteRamdiskEntry(ctx, other, RamdiskEntry{BootUUID: "u"}); err == nil {
		t.Error("ramdisk.cfg written through a symlinked grub directory")
	}
}
