package engine

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/provisioner/provisioner/bootloader"
	"github.com/provisioner/provisioner/internal/disk"
	"github.com/provisioner/provisioner/internal/run"
	"github.com/provisioner/provisioner/internal/testimage"
	"github.com/provisioner/provisioner/partition"
)

// TestMain lets the test binary act as the confined os-prober child, as the provisioner
// binary does, since the deploy re-executes itself for it. After the tests and benchmarks
// it prints the table of the make bench comparisons that ran (printBenchTable).
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == bootloader.ConfinedProberArg {
		if err := bootloader.ConfinedProberMain(context.Background(), run.Exec{}, os.Args[2:], os.Stdout); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	code := m.Run()
	printBenchTable(os.Stdout)
	os.Exit(code)
}

// bootableImages builds two small bootable OS images (a Debian cloud kernel, a stage-1
// initramfs and busybox; testimage) and serves them over HTTP.
func bootableImages(t *testing.T) (*testimage.Kit, *httptest.Server, map[string][]byte) {
	t.Helper()
	ctx := context.Background()
	kit, err := testimage.Prepare(ctx, run.Exec{}, testimage.DefaultCacheDir())
	if errors.Is(err, testimage.ErrUnavailable) && os.Getenv("CI") != "true" {
		t.Skip(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	blobs := map[string][]byte{}
	for _, o := range []testimage.Options{
		{Name: "a", Marker: "BOOTED-IMAGE-A", PrettyName: "Tiny test image A"},
		{Name: "b", Marker: "BOOTED-IMAGE-B", PrettyName: "Tiny test image B"},
	} {
		var b bytes.Buffer
		if err := kit.WriteTarGz(&b, o); err != nil {
			t.Fatal(err)
		}
		blobs[o.Name+".tar.gz"] = b.Bytes()
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		blob, ok := blobs[strings.TrimPrefix(r.URL.Path, "/")]
		if !ok {
			http.NotFound(w, r)
			return
		}
		http.ServeContent(w, r, r.URL.Path, time.Time{}, bytes.NewReader(blob))
	}))
	t.Cleanup(srv.Close)
	return kit, srv, blobs
}

// checkSmallESP checks the default ESP of a deployed disk: 20 MiB of FAT16 that
// fsck.vfat passes, holding grub's EFI image.
func checkSmallESP(t *testing.T, img string, d *partition.DiskLayout) {
	t.Helper()
	var esp *partition.Partition
	for _, p := range d.Partitions {
		if p.Role == partition.RoleESP {
			esp = p
		}
	}
	if esp == nil || esp.SizeBytes != partition.DefaultESPSize {
		t.Fatalf("ESP %+v, want one of %d bytes", esp, partition.DefaultESPSize)
	}
	t.Run("esp", func(t *testing.T) {
		dev := disk.PartitionPath(attachPlanned(t, img, d), esp.Number)
		out, err := exec.Command("blkid", "-p", "-o", "export", dev).Output()
		if info := string(out); err != nil || !strings.Contains(info, "VERSION=FAT16\n") || !strings.Contains(info, "TYPE=vfat\n") {
			t.Errorf("blkid %s: %v\n%s", dev, err, out)
		}
		if out, err := exec.Command("fsck.vfat", "-n", dev).CombinedOutput(); err != nil {
			t.Errorf("fsck.vfat %s: %v\n%s", dev, err, out)
		}
		out, err = exec.Command("mdir", "-i", dev, "::/EFI/BOOT").CombinedOutput()
		if err != nil || !strings.Contains(string(out), "BOOTX64  EFI") {
			t.Errorf("mdir %s: %v\n%s", dev, err, out)
		}
		t.Logf("ESP of %d bytes:\n%s", esp.SizeBytes, out)
	})
}

// bootableDoc is Bareon's multi-image layout: two roots on one disk, BIOS and UEFI.
func bootableDoc(base string, blobs map[string][]byte) string {
	return fmt.Sprintf(`{
  "images": [
    {"name": "tiny-a", "image_name": "Tiny A", "url": "%[1]s/a.tar.gz", "target": "/", "boot": true, "checksum": "sha256:%[2]x"},
    {"name": "tiny-b", "image_name": "Tiny B", "url": "%[1]s/b.tar.gz", "target": "/", "checksum": "sha256:%[3]x"}],
  "deploy_data": {"kernel_params": "console=ttyS0 panic=-1"},
  "grub": {"timeout": 0},
  "partitions": [{"type": "disk", "id": {"type": "name", "value": "vda"}, "size": "1 GiB", "volumes": [
    {"type": "partition", "mount": "/", "file_system": "ext4", "size": "200 MiB", "images": ["tiny-a"]},
    {"type": "partition", "mount": "/", "file_system": "ext4", "size": "200 MiB", "images": ["tiny-b"]}]}]
}`, base, sha256.Sum256(blobs["a.tar.gz"]), sha256.Sum256(blobs["b.tar.gz"]))
}

// TestDeployBootableImages deploys two bootable images onto a disk-image file with both
// kernel probers, and checks the menu, grubenv and boot-info; both probers report the
// same kernels; the boot files are then used offline through the image file (list,
// switch). When QEMU is installed it also boots the disk: the default image comes up.
func TestDeployBootableImages(t *testing.T) {
	needLoop(t, "grub-install", "udevadm", "mkfs.vfat", "mmd", "mcopy", "mdir", "fsck.vfat", "grub-mkimage", "grub-editenv", "grub-script-check")
	kit, srv, blobs := bootableImages(t)
	c := &deployCase{dir: t.TempDir(), tmp: t.TempDir()}
	doc := bootableDoc(srv.URL, blobs)
	var results []*DeployResult
	probers := []string{ProberBuiltin}
	if bootloader.OSProberAvailable() {
		probers = append(probers, ProberOSProber)
	} else if os.Getenv("CI") == "true" {
		t.Fatal("os-prober is missing (make test installs it)")
	}
	var img string
	for _, prober := range probers {
		t.Run(prober, func(t *testing.T) {
			start := time.Now()
			res, path, err := c.deployWith(t, doc, func(o *DeployOptions) {
				o.Boot.Prober = prober
				o.Boot.Self = []string{os.Args[0]}
			})
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("deploy with the %s prober: %v", prober, time.Since(start).Round(time.Millisecond))
			checkDurations(t, res.Durations, []string{"tiny-a", "tiny-b"})
			if b := res.Durations.Bootloader; !b.Concurrent || b.GrubBIOSMS <= 0 || b.GrubUEFIMS <= 0 {
				t.Errorf("bootloader steps %+v: want both installs, alongside discovery", b)
			}
			results = append(results, res)
			img = path
		})
	}
	if len(results) != len(probers) {
		t.FailNow()
	}
	// Same seed, same images: the probers must agree on everything in boot-info.
	for i := 1; i < len(results); i++ {
		if !reflect.DeepEqual(results[0].BootInfo, results[i].BootInfo) {
			a, _ := results[0].BootInfo.Encode()
			b, _ := results[i].BootInfo.Encode()
			t.Errorf("%s and %s probers differ:\n%s\n%s", probers[0], probers[i], a, b)
		}
	}
	res := results[len(results)-1]
	l, bi := res.Layout, res.BootInfo
	for i, name := range []string{"A", "B"} {
		e := bi.Elements[i]
		if e.BootName != "Tiny test image "+name+" (tiny-"+strings.ToLower(name)+")" ||
			e.Kernel != "/boot/vmlinuz-"+kit.KernelVersion || e.Initrd != "/boot/initrd.img-"+kit.KernelVersion ||
			e.Cmdline != "root=UUID="+l.Images[i].RootUUID+" ro console=ttyS0 panic=-1" || e.ImageName != "Tiny "+name {
			t.Errorf("element %d: %+v", i, e)
		}
	}

	// The menu passes grub's own syntax check and names the real kernel.
	var mb *partition.Partition
	for _, p := range l.Disks[0].Partitions {
		if p.Role == partition.RoleMultiboot {
			mb = p
		}
	}
	withPartition(t, img, l.Disks[0], mb.Number, func(t *testing.T, mnt string) {
		cfg := filepath.Join(mnt, "boot/grub/grub.cfg")
		if out, err := exec.Command("grub-script-check", cfg).CombinedOutput(); err != nil {
			t.Errorf("grub-script-check: %v %s", err, out)
		}
		data, _ := os.ReadFile(cfg)
		if n := strings.Count(string(data), "\tlinux /boot/vmlinuz-"+kit.KernelVersion+" root=UUID="); n != 2 {
			t.Errorf("grub.cfg has %d linux lines for the kernel:\n%s", n, data)
		}
		out, err := exec.Command("grub-editenv", filepath.Join(mnt, "boot/grub/grubenv"), "list").CombinedOutput()
		if err != nil || strings.TrimSpace(string(out)) != "saved_entry=provisioner-tiny-a" {
			t.Errorf("grubenv: %v %s", err, out)
		}
	})

	checkSmallESP(t, img, l.Disks[0])

	// Offline use of the disk image: what `provisioner list/switch-default --device` do.
	ctx := context.Background()
	switchTo := func(idOrName string, once bool) {
		t.Helper()
		bd, err := OpenBootDir(ctx, BootDirOptions{Device: img, Writable: true, Env: HostEnv(nil), TmpDir: c.tmp})
		if err != nil {
			t.Fatal(err)
		}
		defer func() {
			if err := bd.Close(ctx); err != nil {
				t.Error(err)
			}
		}()
		if !strings.Contains(bd.Source, "(multiboot)") {
			t.Errorf("found the boot files on %s", bd.Source)
		}
		if _, err := bootloader.SwitchDefault(ctx, bd.Path, bootloader.SwitchOptions{Entry: idOrName, Once: once}); err != nil {
			t.Fatal(err)
		}
	}

	if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
		t.Log("qemu-system-x86_64 is not installed: the disk is not booted here (the integration suite boots it)")
		switchTo("tiny-b", false)
		return
	}
	// Boot under SeaBIOS: the default entry, then after a switch the other one.
	bootMarker(t, img, "BOOTED-IMAGE-A", false)
	switchTo("1", false)
	bootMarker(t, img, "BOOTED-IMAGE-B", false)
	switchTo("tiny-a", true)
	bootMarker(t, img, "BOOTED-IMAGE-A", false)
	bootMarker(t, img, "BOOTED-IMAGE-B", false)
	// The same disk under OVMF: BOOTX64.EFI on the ESP finds the same grub directory.
	if _, err := os.Stat(ovmfCode); err == nil {
		bootMarker(t, img, "BOOTED-IMAGE-B", true)
	} else {
		t.Logf("%s is missing: not booted under UEFI here", ovmfCode)
	}
	noLoopFor(t, img)
}

// OVMF firmware (Debian's ovmf package): 4 MiB code and its variable store template.
const (
	ovmfCode = "/usr/share/OVMF/OVMF_CODE_4M.fd"
	ovmfVars = "/usr/share/OVMF/OVMF_VARS_4M.fd"
)

// bootMarker boots the disk image in QEMU (TCG, SeaBIOS) until the image's init prints
// its marker and powers off, and fails when another marker (or none) shows up.
func bootMarker(t *testing.T, img, want string, uefi bool) {
	t.Helper()
	tmp := t.TempDir()
	serial := filepath.Join(tmp, "serial.log")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	start := time.Now()
	args := []string{"-machine", "q35", "-accel", "tcg", "-cpu", "max", "-smp", "1", "-m", "512",
		"-display", "none", "-no-reboot", "-serial", "file:" + serial, "-drive", "file=" + img + ",format=raw,if=virtio"}
	if uefi {
		vars, err := os.ReadFile(ovmfVars)
		if err != nil {
			t.Fatal(err)
		}
		// Each VM gets its own writable copy of the variable store.
		varsCopy := filepath.Join(tmp, "vars.fd")
		if err := os.WriteFile(varsCopy, vars, 0o644); err != nil {
			t.Fatal(err)
		}
		args = append(args, "-drive", "if=pflash,format=raw,unit=0,readonly=on,file="+ovmfCode, "-drive", "if=pflash,format=raw,unit=1,file="+varsCopy)
	}
	cmd := exec.CommandContext(ctx, "qemu-system-x86_64", args...)
	out, err := cmd.CombinedOutput()
	log, _ := os.ReadFile(serial)
	got := ""
	for _, m := range []string{"BOOTED-IMAGE-A", "BOOTED-IMAGE-B"} {
		if bytes.Contains(log, []byte(m)) {
			got = m
		}
	}
	if err != nil || got != want {
		t.Fatalf("boot: want %s, got %q (qemu: %v %s)\nserial log:\n%s", want, got, err, out, log)
	}
	firmware := "SeaBIOS"
	if uefi {
		firmware = "OVMF"
	}
	t.Logf("booted %s under %s in %v", want, firmware, time.Since(start).Round(100*time.Millisecond))
}
