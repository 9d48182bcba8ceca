package bootloader

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/provisioner/provisioner/internal/disk"
	"github.com/provisioner/provisioner/internal/run"
)

func TestInstallArgv(t *testing.T) {
	bios := run.String(Installer{GrubLib: "/g"}.BIOSMkimageArgv("/t/core.img", "/t/load.cfg", "/boot/grub"))
	if !strings.HasPrefix(bios, "grub-mkimage -d /g/i386-pc -O i386-pc -o /t/core.img -c /t/load.cfg -p /boot/grub biosdisk part_gpt ") || !strings.HasSuffix(bios, " search_fs_uuid") {
		t.Errorf("BIOS mkimage argv: %s", bios)
	}
	if got := run.String(Installer{GrubLib: "/g"}.BIOSSetupArgv("/mnt/mb/boot/grub/i386-pc", "/dev/vda")); got != "/g/i386-pc/grub-bios-setup --directory=/mnt/mb/boot/grub/i386-pc /dev/vda" {
		t.Errorf("BIOS setup argv: %s", got)
	}
	if got := EarlyConfig(Multiboot("/mnt/mb", "1234")); got != "search.fs_uuid 1234 root\nset prefix=($root)/boot/grub\n" {
		t.Errorf("early config: %q", got)
	}
	// A single image with a separate /boot volume: grub's directory is /grub on it.
	if got := EarlyConfig(Location{Dir: "/mnt/boot", GrubDir: "grub", Prefix: "/grub", FSUUID: "5678"}); got != "search.fs_uuid 5678 root\nset prefix=($root)/grub\n" {
		t.Errorf("early config, separate /boot: %q", got)
	}
	mk := Installer{}.MkimageArgv("/t/BOOTX64.EFI", "/t/early.cfg", "/boot/grub")
	if run.String(mk[:11]) != "grub-mkimage -d /usr/lib/grub/x86_64-efi -O x86_64-efi -o /t/BOOTX64.EFI -c /t/early.cfg -p /boot/grub" {
		t.Errorf("mkimage argv: %s", run.String(mk))
	}
	for _, m := range []string{"part_gpt", "fat", "lvm", "search_fs_uuid", "normal"} {
		found := false
		for _, a := range mk {
			found = found || a == m
		}
		if !found {
			t.Errorf("the EFI image lacks module %s", m)
		}
	}
}

// TestInstallOnLoopDisk installs grub for BIOS and UEFI onto a loop disk laid out as
// the planner does (BIOS boot, multiboot, ESP): the MBR gets boot code, the BIOS boot
// partition the core image, the multiboot filesystem grub's directory, and the ESP (never
// mounted) EFI/BOOT/BOOTX64.EFI, passing fsck.vfat.
func TestInstallOnLoopDisk(t *testing.T) {
	if testing.Short() || os.Geteuid() != 0 {
		t.Skip("loop-device test: needs root and no -short")
	}
	for _, tool := range []string{"grub-mkimage", "mcopy", "mdir", "udevadm", "sgdisk", "mkfs.vfat", "mke2fs", "fsck.vfat"} {
		if _, err := exec.LookPath(tool); err != nil {
			if os.Getenv("CI") == "true" {
				t.Fatalf("%s is missing (make test installs it)", tool)
			}
			t.Skipf("%s is not installed", tool)
		}
	}
	ctx := context.Background()
	img := filepath.Join(t.TempDir(), "disk.img")
	if err := os.WriteFile(img, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	os.Truncate(img, 512<<20)
	sh := func(argv ...string) {
		t.Helper()
		if out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%v: %v\n%s", argv, err, out)
		}
	}
	sh("sgdisk", "-o", "-n1:2048:4095", "-t1:EF02", "-n2:4096:208895", "-t2:8300", "-n3:208896:733183", "-t3:EF00", img)
	loop, err := disk.AttachLoop(ctx, img, 512)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := loop.Detach(ctx); err != nil {
			t.Errorf("detach: %v", err)
		}
	})
	parts := []disk.Part{{Number: 1, Start: 2048 * 512, Size: 2048 * 512}, {Number: 2, Start: 4096 * 512, Size: 204800 * 512}, {Number: 3, Start: 208896 * 512, Size: 524288 * 512}}
	if err := (disk.Sys{}).Reread(ctx, loop.Path, parts); err != nil {
		t.Fatal(err)
	}
	mbDev, espDev := disk.PartitionPath(loop.Path, 2), disk.PartitionPath(loop.Path, 3)
	const mbUUID = "3a6c9c44-8a0b-4a6e-9f55-2a2f1b0c9d11"
	sh("mke2fs", "-q", "-F", "-t", "ext4", "-U", mbUUID, mbDev)
	sh("mkfs.vfat", "-F", "32", espDev)
	mnt := t.TempDir()
	if err := disk.Mount(ctx, mbDev, mnt, "ext4", ""); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := disk.Unmount(ctx, mnt); err != nil {
			t.Error(err)
		}
	})

	in := Installer{Run: run.Exec{}}
	loc := Multiboot(mnt, mbUUID)
	if err := in.InstallBIOS(ctx, loc, []string{loop.Path}, t.TempDir()); err != nil {
		t.Fatal(err)
	}
	if err := in.InstallEFI(ctx, loc, espDev, t.TempDir()); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"boot/grub/i386-pc/core.img", "boot/grub/i386-pc/boot.img", "boot/grub/i386-pc/load.cfg", "boot/grub/i386-pc/normal.mod", "boot/grub/i386-pc/command.lst", "boot/grub/x86_64-efi/normal.mod"} {
		if _, err := os.Stat(filepath.Join(mnt, f)); err != nil {
			t.Errorf("grub directory: %v", err)
		}
	}
	mbr := make([]byte, 440)
	f, err := os.Open(loop.Path)
	if err != nil {
		t.Fatal(err)
	}
	f.ReadAt(mbr, 0)
	core := make([]byte, 4096)
	f.ReadAt(core, 2048*512)
	f.Close()
	if bytes.Equal(mbr, make([]byte, 440)) || bytes.Equal(core[:512], make([]byte, 512)) {
		t.Error("no boot code in the MBR or no core image in the BIOS boot partition")
	}
	// The BIOS boot partition holds the core image left in grub's directory (past its
	// first two sectors, where grub-bios-setup fills in the block list and the partition).
	built, err := os.ReadFile(filepath.Join(mnt, "boot/grub/i386-pc/core.img"))
	if err != nil || len(built) < len(core) || !bytes.Equal(built[1024:len(core)], core[1024:]) {
		t.Errorf("the BIOS boot partition does not hold grub's core.img (%v)", err)
	}
	out, err := exec.Command("mdir", "-i", espDev, "::/EFI/BOOT").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "BOOTX64  EFI") {
		t.Errorf("ESP: %v\n%s", err, out)
	}
	if out, err := exec.Command("fsck.vfat", "-n", espDev).CombinedOutput(); err != nil {
		t.Errorf("fsck.vfat: %v\n%s", err, out)
	}
}
