//go:build integration

package integration

import (
	"crypto/sha256"
	"fmt"
	"strings"
	"testing"

	"github.com/provisioner/provisioner/internal/vmrun"
)

// singleRamdiskSpec is one image, tiny-a, keeping the deploy ramdisk the conductor serves
// under rd/: the node gets a multiboot partition holding grub and the ramdisk.
func singleRamdiskSpec(c *vmrun.Conductor) string {
	return fmt.Sprintf(`{
  "images": [{"name": "tiny-a", "image_name": "Tiny A", "url": %q, "target": "/", "boot": true, "checksum": "sha256:%x"}],
  "boot_mode": "bios",
  "deploy_data": {"kernel_params": "console=ttyS0 quiet panic=-1"},
  "grub": {"timeout": 0},
  "ramdisk": {"url": %q},
  "partitions": [{"type": "disk", "id": {"type": "name", "value": "vda"}, "size": "2 GiB", "volumes": [
    {"type": "partition", "mount": "/", "file_system": "ext4", "size": "400 MiB", "images": ["tiny-a"]}]}]
}`, c.GuestURL("a.tar.gz"), sha256.Sum256(images["a.tar.gz"]), c.GuestURL("rd/"))
}

// reloadViaRamdisk is the command that stages a reload of tiny-a from the conductor's
// image through the ramdisk, reporting to the conductor.
func reloadViaRamdisk(c *vmrun.Conductor, image string, tries int, how string) string {
	return fmt.Sprintf("provisioner reload tiny-a --url %s --checksum sha256:%x --tries %d --via-ramdisk --callback %s --token %s %s",
		c.GuestURL(image), sha256.Sum256(images[image]), tries, c.GuestURL(vmrun.CallbackName), c.Token, how)
}

// ramdiskReloaded checks a serial log in which the kept ramdisk reloaded tiny-a, and that
// the conductor's last event says it succeeded.
func ramdiskReloaded(t *testing.T, c *vmrun.Conductor, log []byte) {
	t.Helper()
	s := string(log)
	if !strings.Contains(s, "provisioner ramdisk: reloading tiny-a from ") || !strings.Contains(s, "provisioner ramdisk: reload succeeded") {
		t.Fatalf("the ramdisk did not reload tiny-a; events:\n%s", c.EventLog())
	}
	if last, ok := c.Last(); !ok || last.Type != "succeeded" {
		t.Errorf("last event %+v, want succeeded; events:\n%s", last, c.EventLog())
	}
}

// TestScenarioReloadViaRamdisk reloads the root a single-image node runs from, through
// the deploy ramdisk kept on its multiboot partition, three ways in one node's life:
//  1. A stages a reload to b2 (reload --via-ramdisk); the next boot is the ramdisk, which
//     reloads tiny-a and reboots; B2 comes up on trial and confirms.
//  2. B2 stages a reload to a2 with --kexec: the ramdisk comes up in the same VM without
//     the firmware, reloads and reboots; A2 comes up on trial and confirms.
//  3. A2 stages a reload to bpanic, which panics on its one try; grub then boots the
//     ramdisk by itself, which reports the failed trial to the conductor (step "trial")
//     and waits at its shell.
//
// One deploy (about 25 to 75 s under TCG) and 8 boots (7 to 30 s each), about 3 minutes.
func TestScenarioReloadViaRamdisk(t *testing.T) {
	needSuite(t)
	c := newConductor(t)
	c.PutFile("rd/vmlinuz", ramdisk.Kernel)
	c.PutFile("rd/initramfs.cpio.zst", ramdisk.Initramfs)
	disk := sparse(t, 2<<30)
	deploy(t, c, singleRamdiskSpec(c), disk)
	d := []string{disk}
	confirmed := func(log []byte, want string) {
		t.Helper()
		expectBoot(t, log, want)
		if out := cmdOutput(log); !strings.Contains(out, "on trial") || !strings.Contains(out, "default, booted now") {
			t.Errorf("list, confirm, list in %s (want tiny-a on trial, then the default):\n%s", want, out)
		}
	}

	log := bootNet(t, d, nil, false, reloadViaRamdisk(c, "b2.tar.gz", 2, "")+" && provisioner list")
	expectBoot(t, log, "BOOTED-IMAGE-A")
	if out := cmdOutput(log); !strings.Contains(out, "the deploy ramdisk boots once, at the next boot") || !strings.Contains(out, "next boot (once): the deploy ramdisk") {
		t.Errorf("reload --via-ramdisk and list in A:\n%s", out)
	}
	ramdiskReloaded(t, c, bootNet(t, d, nil, false, ""))
	confirmed(boot(t, d, false, "provisioner list && provisioner confirm && provisioner list"), "BOOTED-IMAGE-B2")

	// --kexec reboots from inside the script: the log holds B2, then the ramdisk.
	log = bootNet(t, d, nil, false, reloadViaRamdisk(c, "a2.tar.gz", 2, "--kexec"))
	if marker(log) != "BOOTED-IMAGE-B2" {
		t.Fatalf("booted %q, want B2", marker(log))
	}
	ramdiskReloaded(t, c, log)
	confirmed(bootNet(t, d, nil, false, "provisioner list && provisioner confirm && provisioner list && "+reloadViaRamdisk(c, "bpanic.tar.gz", 1, "")), "BOOTED-IMAGE-A2")

	ramdiskReloaded(t, c, bootNet(t, d, nil, false, ""))
	log = boot(t, d, false, "")
	if marker(log) != "BOOTED-IMAGE-BPANIC" || !strings.Contains(string(log), "Kernel panic") {
		t.Fatalf("booted %q, want BPANIC's panic", marker(log))
	}
	log = runVM(t, vmrun.Options{Disks: d, Net: true, Until: []byte(failedShell)})
	if !strings.Contains(string(log), "provisioner ramdisk: booted") {
		t.Fatalf("grub did not fall back to the ramdisk after the failed trial")
	}
	last, ok := c.Last()
	if !ok || last.Type != "failed" || last.Step != "trial" || !strings.Contains(last.Error, "tiny-a") {
		t.Errorf("last event %+v, want failed at step trial; events:\n%s", last, c.EventLog())
	}
	t.Logf("the ramdisk reported: %s", last.Error)
}
