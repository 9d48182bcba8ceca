//go:build integration

package integration

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"strings"
	"testing"

	"github.com/provisioner/provisioner/internal/testimage"
	"github.com/provisioner/provisioner/internal/vmrun"
)

// storageBuilt caches the storage images across the tests that serve them: they are
// deterministic, and each is some 30 MB of gzip.
var storageBuilt = map[string][]byte{}

// storageImages builds (once) the OS images of scenario 4 and puts them on c: their
// stage-1 initramfs assembles md arrays and activates LVM (the plain images' cannot),
// and each carries the provisioner. It returns the sha256 of each image by name.
func storageImages(t *testing.T, c *vmrun.Conductor, names ...string) map[string][32]byte {
	t.Helper()
	sums := map[string][32]byte{}
	for _, name := range names {
		img, ok := storageBuilt[name]
		if !ok {
			if err := kit.PrepareStorage(context.Background()); err != nil {
				t.Fatal(err)
			}
			var b bytes.Buffer
			o := testimage.Options{Name: name, Marker: "BOOTED-IMAGE-" + strings.ToUpper(name), Storage: true,
				Files:      map[string]testimage.File{"usr/bin/provisioner": {Data: provisionerBin, Mode: 0o755}},
				InitScript: imageInitScript}
			if err := kit.WriteTarGz(&b, o); err != nil {
				t.Fatal(err)
			}
			img = b.Bytes()
			storageBuilt[name] = img
		}
		c.Put(name+".tar.gz", img)
		sums[name] = sha256.Sum256(img)
	}
	return sums
}

// rootMount is the command that prints the device the booted image's / is mounted from.
const rootMount = "grep -m1 ' / ' /proc/mounts"

// storageSpec lays out scenario 4 over vda and vdb: lvm-boot on a logical volume with a
// separate /boot partition, lvm-root on a logical volume holding its kernel, raid on an md
// raid1 array with a member on each disk; sums are the images' sha256 by name.
func storageSpec(c *vmrun.Conductor, sums map[string][32]byte) string {
	return fmt.Sprintf(`{
  "images": [
    {"name": "lvm-boot", "url": %q, "target": "/", "boot": true, "checksum": "sha256:%x"},
    {"name": "lvm-root", "url": %q, "target": "/", "checksum": "sha256:%x"},
    {"name": "raid", "url": %q, "target": "/", "checksum": "sha256:%x"}],
  "boot_mode": "both",
  "deploy_data": {"kernel_params": "console=ttyS0 quiet panic=-1"},
  "grub": {"timeout": 0},
  "partitions": [
    {"type": "vg", "id": "os", "volumes": [
      {"type": "lv", "name": "lvm-boot-root", "mount": "/", "file_system": "ext4", "size": "300 MiB", "images": ["lvm-boot"]},
      {"type": "lv", "name": "lvm-root", "mount": "/", "file_system": "ext4", "size": "300 MiB", "images": ["lvm-root"]}]},
    {"type": "disk", "id": {"type": "name", "value": "vda"}, "size": "2 GiB", "volumes": [
      {"type": "partition", "mount": "/boot", "file_system": "ext4", "size": "200 MiB", "images": ["lvm-boot"]},
      {"type": "pv", "vg": "os", "size": "700 MiB"},
      {"type": "raid", "mount": "/", "file_system": "ext4", "size": "400 MiB", "name": "md0", "images": ["raid"]}]},
    {"type": "disk", "id": {"type": "name", "value": "vdb"}, "size": "1 GiB", "volumes": [
      {"type": "raid", "mount": "/", "file_system": "ext4", "size": "400 MiB", "name": "md0", "images": ["raid"]}]}]
}`, c.GuestURL("lvm-boot.tar.gz"), sums["lvm-boot"], c.GuestURL("lvm-root.tar.gz"), sums["lvm-root"], c.GuestURL("raid.tar.gz"), sums["raid"])
}

// TestScenarioLVMAndRAID is scenario 4: three roots on two disks, under BIOS and UEFI.
// lvm-boot has its root on a logical volume and its kernel on a separate /boot
// partition; lvm-root has its kernel on its logical volume, which grub reads through its
// lvm module; raid has its root on an md raid1 array across both disks, read by grub's
// mdraid1x. The deploy uses the default prober: os-prober, confined to the two disks,
// finds the LVM roots' kernels; it never looks at md arrays, so the raid root's is read
// in Go. Each image boots in turn (switching inside the booted image, which must find
// the boot files on a node whose root is a logical volume), and the raid image boots
// again with the second disk gone, its array started degraded.
func TestScenarioLVMAndRAID(t *testing.T) {
	needSuite(t)
	c := newConductor(t)
	sums := storageImages(t, c, "lvm-boot", "lvm-root", "raid")
	vda, vdb := sparse(t, 2<<30), sparse(t, 1<<30)
	bi, deployLog := deployProbing(t, c, storageSpec(c, sums), "auto", vda, vdb)
	if len(bi.Elements) != 3 || bi.MultibootPartition == "" {
		t.Fatalf("boot info: %+v", bi)
	}
	for _, want := range []string{`"msg":"kernel found by os-prober","image":"lvm-boot"`, `"msg":"kernel found by os-prober","image":"lvm-root"`, `"msg":"kernel found","image":"raid"`} {
		if !bytes.Contains(deployLog, []byte(want)) {
			t.Errorf("the deploy's log lacks %s", want)
		}
	}
	disks := []string{vda, vdb}

	// The LV root with a separate /boot, under SeaBIOS.
	log := boot(t, disks, false, rootMount+"\nprovisioner list\nprovisioner switch-default lvm-root")
	expectBoot(t, log, "BOOTED-IMAGE-LVM-BOOT")
	out := cmdOutput(log)
	t.Logf("inside lvm-boot:\n%s", out)
	if !strings.HasPrefix(out, "/dev/dm-") && !strings.HasPrefix(out, "/dev/mapper/") || !bytes.Contains(log, []byte("MOUNTED /boot")) ||
		!strings.Contains(out, "default, booted now") || !strings.Contains(out, "default is now 1 (lvm-root)") {
		t.Errorf("lvm-boot: the root is not a logical volume, /boot is not mounted, or list/switch-default failed:\n%s", out)
	}

	// The kernel on the LV itself, under OVMF.
	log = boot(t, disks, true, rootMount+"\nprovisioner switch-default raid")
	expectBoot(t, log, "BOOTED-IMAGE-LVM-ROOT")
	t.Logf("inside lvm-root:\n%s", cmdOutput(log))
	if out := cmdOutput(log); !strings.HasPrefix(out, "/dev/dm-") && !strings.HasPrefix(out, "/dev/mapper/") || !strings.Contains(out, "default is now 2 (raid)") {
		t.Errorf("lvm-root: the root is not a logical volume, or switch-default failed:\n%s", out)
	}

	// The raid1 root, both members present.
	log = boot(t, disks, false, rootMount+"\ncat /proc/mdstat")
	expectBoot(t, log, "BOOTED-IMAGE-RAID")
	out = cmdOutput(log)
	t.Logf("inside raid:\n%s", out)
	if !strings.HasPrefix(out, "/dev/md") || !strings.Contains(out, "raid1") || !strings.Contains(out, "[2/2] [UU]") {
		t.Errorf("raid: the root is not a complete raid1 array:\n%s", out)
	}

	// A raid1 must boot with a disk gone: grub reads the array from vda's member alone
	// and stage 1 starts it degraded.
	log = boot(t, []string{vda}, false, rootMount+"\ncat /proc/mdstat")
	expectBoot(t, log, "BOOTED-IMAGE-RAID")
	t.Logf("inside raid, one disk:\n%s", cmdOutput(log))
	if out := cmdOutput(log); !strings.HasPrefix(out, "/dev/md") || !strings.Contains(out, "[2/1]") {
		t.Errorf("raid without its second disk: the array did not start degraded:\n%s", out)
	}
}

// TestScenarioLVMAndRAIDFailure: a deploy that fails once the volume group and the array
// are active and mounted (the last image has a wrong checksum) erases its tables and
// releases them, so the kernel lists no partition of the disks any more (a retry through
// the agent would otherwise find them busy), and reports only the image's failure.
func TestScenarioLVMAndRAIDFailure(t *testing.T) {
	needSuite(t)
	c := newConductor(t)
	sums := storageImages(t, c, "lvm-boot", "lvm-root", "raid")
	sums["lvm-root"] = [32]byte{}
	vda, vdb := sparse(t, 2<<30), sparse(t, 1<<30)
	c.Put("spec.json", []byte(storageSpec(c, sums)))
	runVM(t, vmrun.Options{Kernel: ramdisk.Kernel, Initrd: ramdisk.Initramfs, Net: true, Disks: []string{vda, vdb}, Until: []byte(failedShell),
		Append: ramdiskArgs(c, "provisioner.spec="+c.GuestURL("spec.json"), "provisioner.prober=builtin")})
	last, _ := c.Last()
	if last.Type != "failed" || last.Step != "images" || !strings.Contains(last.Error, "checksum mismatch") || strings.Contains(last.Error, "erasing the partition tables failed") {
		t.Errorf("final event %+v", last)
	}
}
