package engine

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/provisioner/provisioner/bootloader"
	"github.com/provisioner/provisioner/deploy"
	"github.com/provisioner/provisioner/partition"
	"golang.org/x/sys/unix"
)

// fakeCmdline is a ramdisk's command line as a PXE boot gives it.
const fakeCmdline = "BOOT_IMAGE=/vmlinuz initrd=initramfs.cpio.zst console=tty0 console=ttyS0,115200n8 " +
	"provisioner.spec=http://10.0.0.1/spec.json provisioner.token=secret BOOTIF=01-52-54-00-12-34-56 ip=dhcp\n"

// fakeBase is what a kept ramdisk boots with of fakeCmdline.
var fakeBase = []string{"console=tty0", "console=ttyS0,115200n8", "ip=dhcp"}

// ramdiskBlobs serves a fake ramdisk under rd/ with its SHA256SUMS.
func ramdiskBlobs(s *imageServer, kernel, initrd []byte) {
	s.blobs["rd/vmlinuz"] = kernel
	s.blobs["rd/initramfs.cpio.zst"] = initrd
	s.blobs["rd/SHA256SUMS"] = []byte(fmt.Sprintf("%x  vmlinuz\n%x  initramfs.cpio.zst\n", sha256.Sum256(kernel), sha256.Sum256(initrd)))
}

func fakeRamdisk(n int, seed byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = seed + byte(i*7)
	}
	return b
}

func TestBaseKernelWords(t *testing.T) {
	got := BaseKernelWords(bootloader.KernelWords(fakeCmdline))
	if !slices.Equal(got, fakeBase) {
		t.Errorf("BaseKernelWords = %q, want %q", got, fakeBase)
	}
	if got := BaseKernelWords(nil); got == nil || len(got) != 0 {
		t.Errorf("no words: %#v", got)
	}
}

// keepCase is a boot directory and a server with a fake ramdisk.
type keepCase struct {
	dir            string
	srv            *imageServer
	kernel, initrd []byte
}

func newKeepCase(t *testing.T, dir string) *keepCase {
	c := &keepCase{dir: dir, srv: newImageServer(t), kernel: fakeRamdisk(300<<10, 1), initrd: fakeRamdisk(700<<10, 2)}
	ramdiskBlobs(c.srv, c.kernel, c.initrd)
	return c
}

func (c *keepCase) opts() KeepRamdiskOptions {
	return KeepRamdiskOptions{
		Fetcher: &deploy.Fetcher{Backoff: func(int) time.Duration { return time.Millisecond }, Retries: -1},
		URL:     c.srv.URL + "/rd", Checksum: c.srv.URL + "/rd/SHA256SUMS", Dir: c.dir, BootUUID: "11111111-2222-3333-4444-555555555555",
		Cmdline: bootloader.KernelWords(fakeCmdline),
	}
}

// entries lists the names in dir/ramdisk and dir/boot/grub, temporary files included.
func (c *keepCase) entries(t *testing.T) []string {
	t.Helper()
	var names []string
	for _, sub := range []string{bootloader.RamdiskDir, bootloader.DefaultGrubDir} {
		ents, err := os.ReadDir(filepath.Join(c.dir, sub))
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range ents {
			names = append(names, sub+"/"+e.Name())
		}
	}
	return names
}

// TestKeepRamdisk: both files are kept with their bytes, the base words and the menu entry
// written; a checksum mismatch or a fetch cut short changes nothing that was kept and
// leaves no temporary file.
func TestKeepRamdisk(t *testing.T) {
	ctx := context.Background()
	c := newKeepCase(t, t.TempDir())
	info, err := KeepRamdisk(ctx, c.opts())
	if err != nil {
		t.Fatal(err)
	}
	if info.KernelBytes != int64(len(c.kernel)) || info.InitrdBytes != int64(len(c.initrd)) || !slices.Equal(info.Cmdline, fakeBase) {
		t.Errorf("info %+v", info)
	}
	c.checkKept(t, c.kernel, c.initrd)
	want := []string{"ramdisk/cmdline", "ramdisk/initramfs.cpio.zst", "ramdisk/vmlinuz", "boot/grub/ramdisk.cfg"}
	if got := c.entries(t); !slices.Equal(got, want) {
		t.Errorf("files %q, want %q", got, want)
	}

	// A new ramdisk whose initramfs does not match the checksum file: nothing changes.
	newKernel, newInitrd := fakeRamdisk(310<<10, 3), fakeRamdisk(710<<10, 4)
	ramdiskBlobs(c.srv, newKernel, newInitrd)
	c.srv.blobs["rd/initramfs.cpio.zst"] = append(slices.Clone(newInitrd[:len(newInitrd)-1]), 'x')
	_, err = KeepRamdisk(ctx, c.opts())
	if !errors.Is(err, deploy.ErrChecksum) || !strings.Contains(err.Error(), "initramfs.cpio.zst") {
		t.Fatalf("checksum mismatch: err = %v", err)
	}
	if ExitCode(err) != ExitImage {
		t.Errorf("checksum mismatch: exit code %d", ExitCode(err))
	}
	c.checkKept(t, c.kernel, c.initrd)
	if got := c.entries(t); !slices.Equal(got, want) {
		t.Errorf("after the mismatch: files %q", got)
	}

	// A fetch cut short that cannot resume: nothing changes either.
	c.srv.blobs["rd/initramfs.cpio.zst"] = newInitrd
	c.srv.cut["rd/initramfs.cpio.zst"] = 100 << 10
	c.srv.noResume["rd/initramfs.cpio.zst"] = true
	if _, err = KeepRamdisk(ctx, c.opts()); !errors.Is(err, deploy.ErrImage) {
		t.Fatalf("cut fetch: err = %v", err)
	}
	c.checkKept(t, c.kernel, c.initrd)
	if got := c.entries(t); !slices.Equal(got, want) {
		t.Errorf("after the cut: files %q", got)
	}

	// Without a checksum file the new ramdisk replaces the old one.
	delete(c.srv.noResume, "rd/initramfs.cpio.zst")
	o := c.opts()
	o.Checksum = ""
	if _, err := KeepRamdisk(ctx, o); err != nil {
		t.Fatal(err)
	}
	c.checkKept(t, newKernel, newInitrd)
	if _, err := KeepRamdisk(ctx, KeepRamdiskOptions{URL: c.srv.URL + "/rd", Checksum: "sha256:00", Dir: c.dir}); !errors.Is(err, ErrUsage) {
		t.Errorf("one digest for two files: err = %v", err)
	}
}

// checkKept asserts the kept files' bytes, the base words and the menu entry.
func (c *keepCase) checkKept(t *testing.T, kernel, initrd []byte) {
	t.Helper()
	for name, want := range map[string][]byte{bootloader.RamdiskKernel: kernel, bootloader.RamdiskInitrd: initrd,
		bootloader.RamdiskCmdline: []byte(strings.Join(fakeBase, " ") + "\n")} {
		got, err := os.ReadFile(filepath.Join(c.dir, name))
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s: %d bytes, want %d (%v)", name, len(got), len(want), err)
		}
	}
	cfg, err := os.ReadFile(filepath.Join(c.dir, bootloader.RamdiskCfgPath))
	want := bootloader.RenderRamdiskEntry(bootloader.RamdiskEntry{BootUUID: "11111111-2222-3333-4444-555555555555", Args: fakeBase})
	if err != nil || !bytes.Equal(cfg, want) {
		t.Errorf("ramdisk.cfg (%v):\n%s", err, cfg)
	}
}

// TestKeepRamdiskNoRoom: on a filesystem too small for the ramdisk, KeepRamdisk refuses
// with the bytes needed and free before writing anything of it.
func TestKeepRamdiskNoRoom(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounting a tmpfs needs root")
	}
	dir := t.TempDir()
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, "size=768k"); err != nil {
		t.Skipf("mounting a tmpfs: %v", err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(dir, 0); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
	})
	c := newKeepCase(t, dir)
	_, err := KeepRamdisk(context.Background(), c.opts())
	if !errors.Is(err, ErrRamdiskNoRoom) || ExitCode(err) != ExitWrite {
		t.Fatalf("err = %v (exit code %d), want ErrRamdiskNoRoom", err, ExitCode(err))
	}
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	free := st.Bavail * uint64(st.Bsize)
	needed := uint64(len(c.kernel)+len(c.initrd)) + 4*uint64(st.Bsize)
	for _, s := range []string{fmt.Sprintf("needs %d bytes", needed), fmt.Sprintf("has %d bytes", free), "vmlinuz 300 KiB", "initramfs.cpio.zst 700 KiB"} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("refusal lacks %q: %v", s, err)
		}
	}
	if got := c.entries(t); len(got) != 0 {
		t.Errorf("written before the refusal: %q", got)
	}
}

// ramdiskDoc is one OS image keeping the ramdisk served under base/rd.
func ramdiskDoc(base, extra string) string {
	return fmt.Sprintf(`{
  "images": [{"name": "alpha", "url": "%[1]s/alpha.tar.zst", "target": "/", "boot": true}],
  "boot_mode": "bios",%[2]s
  "ramdisk": {"url": "%[1]s/rd/", "checksum": "%[1]s/rd/SHA256SUMS"},
  "partitions": [{"type": "disk", "id": {"type": "name", "value": "vda"}, "size": "1 GiB", "volumes": [
    {"type": "partition", "mount": "/", "file_system": "ext4", "size": "200 MiB"}]}]
}`, base, extra)
}

// multibootOf returns the multiboot partition of a plan.
func multibootOf(t *testing.T, l *partition.Layout) *partition.Partition {
	t.Helper()
	for _, p := range l.Disks[0].Partitions {
		if p.Role == partition.RoleMultiboot {
			return p
		}
	}
	t.Fatal("no multiboot partition in the plan")
	return nil
}

// TestDeployKeepsRamdisk: a single image keeping the ramdisk gets a multiboot partition
// holding grub, the ramdisk's files with their bytes, the base words of the running
// kernel's command line, and the ramdisk's entry, which grub.cfg sources.
func TestDeployKeepsRamdisk(t *testing.T) {
	c := newDeployCase(t)
	kernel, initrd := fakeRamdisk(2<<20, 5), fakeRamdisk(3<<20, 6)
	ramdiskBlobs(c.srv, kernel, initrd)
	res, img, err := c.deployWith(t, ramdiskDoc(c.srv.URL, ""), func(o *DeployOptions) {
		o.Boot.KernelCmdline = func() (string, error) { return fakeCmdline, nil }
	})
	if err != nil {
		t.Fatal(err)
	}
	l := res.Layout
	if l.Multiboot == nil || res.BootInfo.MultibootPartition != l.Multiboot.UUID || res.BootInfo.GrubDir != "boot/grub" {
		t.Fatalf("multiboot %+v, boot info %+v", l.Multiboot, res.BootInfo)
	}
	withPartition(t, img, l.Disks[0], multibootOf(t, l).Number, func(t *testing.T, mnt string) {
		for name, want := range map[string][]byte{"ramdisk/vmlinuz": kernel, "ramdisk/initramfs.cpio.zst": initrd, "ramdisk/cmdline": []byte("console=tty0 console=ttyS0,115200n8 ip=dhcp\n")} {
			if got, err := os.ReadFile(filepath.Join(mnt, name)); err != nil || !bytes.Equal(got, want) {
				t.Errorf("%s: %d bytes, want %d (%v)", name, len(got), len(want), err)
			}
		}
		cfg, err := os.ReadFile(filepath.Join(mnt, "boot/grub/grub.cfg"))
		if err != nil || !bytes.HasSuffix(cfg, []byte("}\n\n"+`if [ -s "$prefix/ramdisk.cfg" ] ; then source "$prefix/ramdisk.cfg" ; fi`+"\n")) ||
			!bytes.Contains(cfg, []byte(`if [ "${saved_entry}" = provisioner-ramdisk ] ; then set fallback=1 ; fi`)) {
			t.Errorf("grub.cfg (%v):\n%s", err, cfg)
		}
		rcfg, err := os.ReadFile(filepath.Join(mnt, "boot/grub/ramdisk.cfg"))
		for _, s := range []string{"--id 'provisioner-ramdisk'", "search --no-floppy --fs-uuid --set=root " + l.Multiboot.UUID,
			"linux /ramdisk/vmlinuz console=tty0 console=ttyS0,115200n8 ip=dhcp\n", "initrd /ramdisk/initramfs.cpio.zst\n"} {
			if err != nil || !bytes.Contains(rcfg, []byte(s)) {
				t.Errorf("ramdisk.cfg lacks %q (%v):\n%s", s, err, rcfg)
			}
		}
		var st unix.Statfs_t
		if err := unix.Statfs(mnt, &st); err == nil {
			t.Logf("multiboot filesystem: %d bytes of %d used, %d available", (st.Blocks-st.Bfree)*uint64(st.Bsize), st.Blocks*uint64(st.Bsize), st.Bavail*uint64(st.Bsize))
		}
		if out, err := exec.Command("du", "-sb", filepath.Join(mnt, "boot/grub"), filepath.Join(mnt, "ramdisk")).CombinedOutput(); err == nil {
			t.Logf("du:\n%s", out)
		}
		info, err := bootloader.ReadRamdisk(mnt)
		if err != nil || info.KernelBytes != int64(len(kernel)) || info.InitrdBytes != int64(len(initrd)) {
			t.Errorf("ReadRamdisk: %+v, %v", info, err)
		}
	})
}

// TestDeployRamdiskTooBig: a ramdisk that surely does not fit the planned multiboot
// partition is refused with the numbers before the disk is written; one that passes that
// estimate but not the made filesystem's free space is refused with the numbers before
// anything of it, or grub.cfg, is written.
func TestDeployRamdiskTooBig(t *testing.T) {
	c := newDeployCase(t)
	doc := ramdiskDoc(c.srv.URL, `"multiboot_size": "32 MiB",`)
	// Platform files only as symlinks to this machine's, which the room estimate does
	// not count (it counts regular files) and the install reads through: grub's room is
	// then the fixed 8 MiB of the BIOS install, whatever grub this machine has.
	noGrub := linkedGrubLib(t, "i386-pc")
	edit := func(o *DeployOptions) {
		o.Boot.KernelCmdline = func() (string, error) { return fakeCmdline, nil }
		o.Boot.GrubLib = noGrub
		o.PreserveOnError = true
	}

	ramdiskBlobs(c.srv, fakeRamdisk(1<<20, 7), fakeRamdisk(40<<20, 8))
	_, img, err := c.deployWith(t, doc, edit)
	if !errors.Is(err, ErrRamdiskNoRoom) || ExitCode(err) != ExitInvalidSpec {
		t.Fatalf("plan: err = %v (exit code %d), want ErrRamdiskNoRoom", err, ExitCode(err))
	}
	needed := 41<<20 + 8<<20
	room := (32<<20)/100*87 - 4<<20
	for _, s := range []string{fmt.Sprintf("need %d bytes (49 MiB)", needed), fmt.Sprintf("the 32 MiB multiboot partition holds at most %d bytes", room), "multiboot_size 64 MiB or more"} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("plan refusal lacks %q: %v", s, err)
		}
	}
	if fh, err := os.Open(img); err == nil {
		// A sparse image that was never written has no data extent.
		if off, err := unix.Seek(int(fh.Fd()), 0, unix.SEEK_DATA); !errors.Is(err, unix.ENXIO) {
			t.Errorf("the disk image holds data at %d before the plan's refusal (%v)", off, err)
		}
		fh.Close()
	}

	// 15.4 MiB with grub's 8: within the estimate of 23.8 MiB, over the 23 MiB free.
	ramdiskBlobs(c.srv, fakeRamdisk(1<<20, 7), fakeRamdisk(14<<20+410<<10, 8))
	res, img, err := c.deployWith(t, doc, edit)
	if !errors.Is(err, ErrRamdiskNoRoom) || ExitCode(err) != ExitWrite {
		t.Fatalf("write: err = %v (exit code %d), want ErrRamdiskNoRoom", err, ExitCode(err))
	}
	for _, s := range []string{"multiboot partition ", "vmlinuz 1 MiB", "initramfs.cpio.zst 14.40 MiB", "8 MiB for grub's files", "MiB) free", "multiboot_size"} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("refusal lacks %q: %v", s, err)
		}
	}
	if res != nil {
		t.Errorf("result %+v", res)
	}
	l, err := partition.Plan(loadString(t, doc), map[string]partition.Disk{"vda": {SizeBytes: 1 << 30, SectorSize: 512}}, "deploy")
	if err != nil {
		t.Fatal(err)
	}
	withPartition(t, img, l.Disks[0], multibootOf(t, l).Number, func(t *testing.T, mnt string) {
		for _, name := range []string{"ramdisk", "boot/grub/ramdisk.cfg", "boot/grub/grub.cfg"} {
			if _, err := os.Lstat(filepath.Join(mnt, name)); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("%s exists after the refusal (%v)", name, err)
			}
		}
	})
}

// TestDeployDryRunRamdisk: a dry run says the ramdisk would be kept, and fetches nothing.
func TestDeployDryRunRamdisk(t *testing.T) {
	srv := newImageServer(t)
	dir := t.TempDir()
	var out bytes.Buffer
	_, err := Deploy(context.Background(), loadString(t, ramdiskDoc(srv.URL, "")), DeployOptions{
		PartitionOptions: PartitionOptions{
			Targets: []Target{{Name: "vda", Path: filepath.Join(dir, "vda.img")}}, Sizes: map[string]uint64{"vda": 1 << 30},
			Seed: "dry", DryRun: true, Out: &out, Env: HostEnv(nil),
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	want := "then the deploy ramdisk from " + srv.URL + "/rd/ would be kept on the multiboot partition"
	if !strings.Contains(out.String(), want) || !strings.Contains(out.String(), "multiboot") {
		t.Errorf("dry run output lacks %q:\n%s", want, out.String())
	}
	if n := srv.requests.Load(); n != 0 {
		t.Errorf("a dry run made %d requests", n)
	}
}

// linkedGrubLib is a grub library whose platform directories hold symlinks to the files
// of this machine's.
func linkedGrubLib(t *testing.T, platforms ...string) string {
	t.Helper()
	lib := t.TempDir()
	for _, p := range platforms {
		files, _ := filepath.Glob(filepath.Join("/usr/lib/grub", p, "*"))
		if len(files) == 0 {
			t.Skipf("grub's %s platform files are not installed", p)
		}
		if err := os.Mkdir(filepath.Join(lib, p), 0o755); err != nil {
			t.Fatal(err)
		}
		for _, f := range files {
			if err := os.Symlink(f, filepath.Join(lib, p, filepath.Base(f))); err != nil {
				t.Fatal(err)
			}
		}
	}
	return lib
}
