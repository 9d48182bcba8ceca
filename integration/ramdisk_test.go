//go:build integration

package integration

import (
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/provisioner/provisioner/internal/vmrun"
	"github.com/provisioner/provisioner/partition"
)

// twoImageSpec is Bareon's multi-image layout on one disk, its images served by c.
func twoImageSpec(c *vmrun.Conductor, bootMode string) string {
	return fmt.Sprintf(`{
  "images": [
    {"name": "tiny-a", "image_name": "Tiny A", "url": %q, "target": "/", "boot": true, "checksum": "sha256:%x"},
    {"name": "tiny-b", "image_name": "Tiny B", "url": %q, "target": "/", "checksum": "sha256:%x"}],
  "boot_mode": %q,
  "deploy_data": {"kernel_params": "console=ttyS0 quiet panic=-1"},
  "grub": {"timeout": 0},
  "partitions": [{"type": "disk", "id": {"type": "name", "value": "vda"}, "size": "2 GiB", "volumes": [
    {"type": "partition", "mount": "/", "file_system": "ext4", "size": "400 MiB", "images": ["tiny-a"]},
    {"type": "partition", "mount": "/", "file_system": "ext4", "size": "400 MiB", "images": ["tiny-b"]},
    {"type": "partition", "mount": "/srv/data", "file_system": "ext4", "size": "remaining", "images": ["tiny-a", "tiny-b"]}]}]
}`, c.GuestURL("a.tar.gz"), sha256.Sum256(images["a.tar.gz"]), c.GuestURL("b.tar.gz"), sha256.Sum256(images["b.tar.gz"]), bootMode)
}

// TestRamdiskDeploysSpec boots the deploy ramdisk with provisioner.spec pointing at a
// spec the test serves, collects the callback's events, checks the final one carries
// boot-info and the disk holds the layout, then boots the disk: the default image comes
// up.
func TestRamdiskDeploysSpec(t *testing.T) {
	needSuite(t)
	c := newConductor(t)
	c.Put("spec.json", []byte(twoImageSpec(c, "both")))
	disk := sparse(t, 2<<30)
	log := runVM(t, vmrun.Options{
		Kernel: ramdisk.Kernel, Initrd: ramdisk.Initramfs, Net: true, Disks: []string{disk},
		Append: ramdiskArgs(c, "provisioner.spec="+c.GuestURL("spec.json"), "provisioner.after=poweroff"),
	})
	last, ok := c.Last()
	if !ok || last.Type != "succeeded" || last.BootInfo == nil || len(last.BootInfo.Elements) != 2 {
		t.Fatalf("final event %+v; events:\n%s", last, c.EventLog())
	}
	if !strings.Contains(string(log), "provisioner ramdisk: booted") {
		t.Error("no ramdisk banner on the console")
	}
	types := map[string]int{}
	for _, e := range c.Events() {
		types[e.Type+":"+e.Phase]++
	}
	for _, want := range []string{"started:", "phase:plan", "phase:partition", "phase:images", "phase:bootloader"} {
		if types[want] == 0 {
			t.Errorf("no %s event; events:\n%s", want, c.EventLog())
		}
	}
	// The disk holds the planned table: BIOS boot, multiboot, ESP, two roots, shared.
	tbl, err := partition.ReadTable(context.Background(), disk, 512)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, p := range tbl.Partitions {
		names = append(names, p.Name)
	}
	if strings.Join(names, ",") != "BIOS boot,multiboot,EFI system,tiny-a-root,tiny-b-root,srv-data" {
		t.Errorf("partitions on the disk: %v", names)
	}
	bi := last.BootInfo
	if bi.CurrentElement != 0 || bi.Elements[0].OSID != "tiny-a" || bi.Elements[1].Kernel != "/boot/vmlinuz-"+kit.KernelVersion {
		t.Errorf("boot info: %+v", bi)
	}
	// The deployed disk boots the default image (BIOS).
	if got := marker(runVM(t, vmrun.Options{Disks: []string{disk}, Timeout: 5 * time.Minute})); got != "BOOTED-IMAGE-A" {
		t.Errorf("booted %q, want BOOTED-IMAGE-A", got)
	}
}

// TestRamdiskKexecAndFailure: with provisioner.after=kexec the ramdisk boots the
// deployed default entry directly (its marker appears in the same VM, no firmware); and a
// spec with a bad field is reported to the callback with its pointer, the disk is left
// untouched, and the ramdisk stays up (no reboot) with its console shell.
func TestRamdiskKexecAndFailure(t *testing.T) {
	needSuite(t)
	t.Run("kexec", func(t *testing.T) {
		c := newConductor(t)
		c.Put("spec.json", []byte(twoImageSpec(c, "bios")))
		disk := sparse(t, 2<<30)
		log := runVM(t, vmrun.Options{
			Kernel: ramdisk.Kernel, Initrd: ramdisk.Initramfs, Net: true, Disks: []string{disk},
			Append: ramdiskArgs(c, "provisioner.spec="+c.GuestURL("spec.json"), "provisioner.after=kexec"),
		})
		if last, _ := c.Last(); last.Type != "succeeded" {
			t.Fatalf("final event %+v", last)
		}
		if got := marker(log); got != "BOOTED-IMAGE-A" {
			t.Errorf("after kexec: %q, want BOOTED-IMAGE-A", got)
		}
	})
	t.Run("bad spec", func(t *testing.T) {
		c := newConductor(t)
		c.Put("spec.json", []byte(strings.Replace(twoImageSpec(c, "bios"), `"boot": true`, `"boot": true, "bogus": 1`, 1)))
		disk := sparse(t, 2<<30)
		before := hashFile(t, disk)
		log := runVM(t, vmrun.Options{
			Kernel: ramdisk.Kernel, Initrd: ramdisk.Initramfs, Net: true, Disks: []string{disk}, Timeout: 5 * time.Minute,
			Until:  []byte(failedShell),
			Append: ramdiskArgs(c, "provisioner.spec="+c.GuestURL("spec.json")),
		})
		last, _ := c.Last()
		if last.Type != "failed" || last.Step != "spec" || !strings.Contains(last.Error, "/images/0/bogus") {
			t.Errorf("final event %+v", last)
		}
		if !strings.Contains(string(log), "FAILED") {
			t.Error("the console does not say the deploy failed")
		}
		if hashFile(t, disk) != before {
			t.Error("a bad spec changed the disk")
		}
	})
}

func hashFile(t *testing.T, p string) string {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%x", h.Sum(nil))
}
