//go:build integration

package integration

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/provisioner/provisioner/bootloader"
	"github.com/provisioner/provisioner/internal/vmrun"
	"github.com/provisioner/provisioner/partition"
)

// deploy boots the ramdisk with the spec on the given disks and waits for it to power
// off; the deploy must succeed. The built-in prober keeps the suite fast (os-prober in
// the guest is covered by TestRamdiskDeploysSpec).
func deploy(t *testing.T, c *vmrun.Conductor, spec string, disks ...string) *bootloader.BootInfo {
	t.Helper()
	bi, _ := deployProbing(t, c, spec, "builtin", disks...)
	return bi
}

// deployProbing is deploy with the given kernel prober (provisioner.prober); it also
// returns the ramdisk's serial log.
func deployProbing(t *testing.T, c *vmrun.Conductor, spec, prober string, disks ...string) (*bootloader.BootInfo, []byte) {
	t.Helper()
	c.Put("spec.json", []byte(spec))
	start := time.Now()
	// A failed deploy leaves the ramdisk at its console shell: stop there, not at the
	// timeout.
	log := runVM(t, vmrun.Options{Kernel: ramdisk.Kernel, Initrd: ramdisk.Initramfs, Net: true, Disks: disks, Until: []byte(failedShell),
		Append: ramdiskArgs(c, "provisioner.spec="+c.GuestURL("spec.json"), "provisioner.after=poweroff", "provisioner.prober="+prober)})
	last, ok := c.Last()
	if !ok || last.Type != "succeeded" || last.BootInfo == nil {
		t.Fatalf("deploy did not succeed; events:\n%s", c.EventLog())
	}
	t.Logf("deployed in %v", time.Since(start).Round(100*time.Millisecond))
	return last.BootInfo, log
}

// failedShell is what the ramdisk prints once a failed deploy has been reported.
const failedShell = "starting a shell on the console"

// boot boots the disks (SeaBIOS, or OVMF with uefi) with an optional command disk
// holding script, and returns the serial log; the booted image powers off by itself.
func boot(t *testing.T, disks []string, uefi bool, script string) []byte {
	t.Helper()
	return bootWith(t, disks, nil, uefi, script)
}

// bootWith is boot with extra disks (a data disk) attached after disks and before the
// command disk, so the deployed disks keep their names (vda...), the extra ones follow
// and the command disk comes last.
func bootWith(t *testing.T, disks, extra []string, uefi bool, script string) []byte {
	t.Helper()
	return bootVM(t, vmrun.Options{UEFI: uefi}, disks, extra, script)
}

// bootNet is bootWith with a virtio NIC on QEMU's user network: the booted image
// brings it up as 10.0.2.15/24 with the host as gateway (see imageInitScript), so the
// command script reaches a conductor at its GuestURL.
func bootNet(t *testing.T, disks, extra []string, uefi bool, script string) []byte {
	t.Helper()
	return bootVM(t, vmrun.Options{UEFI: uefi, Net: true}, disks, extra, script)
}

// bootVM runs a VM with o (a 5-minute timeout unless o has one) on disks, then extra,
// then a command disk holding script (if any), and returns the serial log.
func bootVM(t *testing.T, o vmrun.Options, disks, extra []string, script string) []byte {
	t.Helper()
	o.Disks = append(append([]string(nil), disks...), extra...)
	if script != "" {
		o.Disks = append(o.Disks, commandDisk(t, script))
	}
	if o.Timeout == 0 {
		o.Timeout = 5 * time.Minute
	}
	return runVM(t, o)
}

// commandDisk writes script on a small raw disk after the line the images look for.
func commandDisk(t *testing.T, script string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "cmd.img")
	data := make([]byte, 1<<20)
	copy(data, "PROVCMD:\n"+script+"\n")
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// expectBoot checks which image came up, and that a command (if any) succeeded.
func expectBoot(t *testing.T, log []byte, want string) {
	t.Helper()
	if got := marker(log); got != want {
		t.Fatalf("booted %q, want %s", got, want)
	}
	if bytes.Contains(log, []byte("CMD-BEGIN")) && !bytes.Contains(log, []byte("CMD-END rc=0")) {
		t.Fatalf("the command in the image failed:\n%s", cmdOutput(log))
	}
}

// cmdOutput is what the command disk's script printed.
func cmdOutput(log []byte) string {
	m := regexp.MustCompile(`(?s)CMD-BEGIN\r?\n(.*)CMD-END`).FindSubmatch(log)
	if m == nil {
		return ""
	}
	return strings.ReplaceAll(string(m[1]), "\r", "")
}

// oneDiskSpec is Bareon's two images on one disk with a data volume both mount.
func oneDiskSpec(c *vmrun.Conductor, bootMode, policy string, keep bool) string {
	return fmt.Sprintf(`{
  "images": [
    {"name": "tiny-a", "image_name": "Tiny A", "url": %q, "target": "/", "boot": true, "checksum": "sha256:%x"},
    {"name": "tiny-b", "image_name": "Tiny B", "url": %q, "target": "/", "checksum": "sha256:%x"}],
  "boot_mode": %q, "partitions_policy": %q,
  "deploy_data": {"kernel_params": "console=ttyS0 quiet panic=-1"},
  "grub": {"timeout": 0},
  "partitions": [{"type": "disk", "id": {"type": "name", "value": "vda"}, "size": "2 GiB", "volumes": [
    {"type": "partition", "mount": "/", "file_system": "ext4", "size": "400 MiB", "images": ["tiny-a"]},
    {"type": "partition", "mount": "/", "file_system": "ext4", "size": "400 MiB", "images": ["tiny-b"]},
    {"type": "partition", "mount": "/srv/data", "file_system": "ext4", "size": "remaining", "images": ["tiny-a", "tiny-b"], "keep_data": %v}]}]
}`, c.GuestURL("a.tar.gz"), sha256.Sum256(images["a.tar.gz"]), c.GuestURL("b.tar.gz"), sha256.Sum256(images["b.tar.gz"]), bootMode, policy, keep)
}

// TestScenarioSwitchBIOS is scenario 1: two images on one disk under SeaBIOS. The boot
// image comes up; inside it `provisioner switch-default 1` makes the other one boot
// next; inside that one `switch-default --once tiny-a` boots the first once, and the
// boot after that is the second again (the one-shot entry was cleared by grub).
func TestScenarioSwitchBIOS(t *testing.T) {
	needSuite(t)
	c := newConductor(t)
	disk := sparse(t, 2<<30)
	deploy(t, c, oneDiskSpec(c, "bios", "clean", false), disk)
	d := []string{disk}
	expectBoot(t, boot(t, d, false, ""), "BOOTED-IMAGE-A")
	log := boot(t, d, false, "provisioner switch-default 1")
	expectBoot(t, log, "BOOTED-IMAGE-A")
	if out := cmdOutput(log); !strings.Contains(out, "default is now 1 (tiny-b) (was 0 (tiny-a))") {
		t.Errorf("switch-default inside the image said:\n%s", out)
	}
	expectBoot(t, boot(t, d, false, ""), "BOOTED-IMAGE-B")
	log = boot(t, d, false, "provisioner switch-default --once tiny-a\nprovisioner list")
	expectBoot(t, log, "BOOTED-IMAGE-B")
	out := cmdOutput(log)
	if !strings.Contains(out, "0 (tiny-a) boots once, at the next boot; then 1 (tiny-b) again") || !regexp.MustCompile(`(?m)^1\s+tiny-b\s.*default, booted now`).MatchString(out) ||
		!regexp.MustCompile(`(?m)^0\s+tiny-a\s.*next boot \(once\)`).MatchString(out) {
		t.Errorf("switch --once and list inside the image said:\n%s", out)
	}
	expectBoot(t, boot(t, d, false, ""), "BOOTED-IMAGE-A")
	log = boot(t, d, false, "provisioner history")
	expectBoot(t, log, "BOOTED-IMAGE-B")
	if out := cmdOutput(log); strings.Count(out, "switch-default") != 2 || !strings.Contains(out, " deploy ") {
		t.Errorf("history inside the image:\n%s", out)
	}
}

// TestScenarioUEFIAndBoth is scenario 2: the same disk with boot_mode both boots under
// OVMF and under SeaBIOS, and a switch made under one firmware holds under the other.
func TestScenarioUEFIAndBoth(t *testing.T) {
	needSuite(t)
	if _, err := os.Stat(vmrun.OVMFCode); err != nil {
		t.Fatalf("OVMF is missing (make test installs ovmf): %v", err)
	}
	c := newConductor(t)
	disk := sparse(t, 2<<30)
	deploy(t, c, oneDiskSpec(c, "both", "clean", false), disk)
	d := []string{disk}
	expectBoot(t, boot(t, d, true, "provisioner switch-default tiny-b"), "BOOTED-IMAGE-A")
	expectBoot(t, boot(t, d, false, ""), "BOOTED-IMAGE-B")
	expectBoot(t, boot(t, d, true, ""), "BOOTED-IMAGE-B")

	t.Run("uefi only", func(t *testing.T) {
		c := newConductor(t)
		disk := sparse(t, 2<<30)
		deploy(t, c, oneDiskSpec(c, "uefi", "clean", false), disk)
		expectBoot(t, boot(t, []string{disk}, true, ""), "BOOTED-IMAGE-A")
	})
}

// TestScenarioTwoDisksSharedSwap is scenario 3: two disks, a partition shared by both
// images on the second disk, swap; both images boot and both fstabs mount the shared
// partition (a file written from one image is read from the other).
func TestScenarioTwoDisksSharedSwap(t *testing.T) {
	needSuite(t)
	c := newConductor(t)
	vda, vdb := sparse(t, 2<<30), sparse(t, 1<<30)
	spec := fmt.Sprintf(`{
  "images": [
    {"name": "tiny-a", "url": %q, "target": "/", "boot": true},
    {"name": "tiny-b", "url": %q, "target": "/"}],
  "boot_mode": "bios",
  "deploy_data": {"kernel_params": "console=ttyS0 quiet panic=-1"},
  "grub": {"timeout": 0},
  "partitions": [
    {"type": "disk", "id": {"type": "name", "value": "vda"}, "size": "2 GiB", "volumes": [
      {"type": "partition", "mount": "/", "file_system": "ext4", "size": "400 MiB", "images": ["tiny-a"]},
      {"type": "partition", "mount": "/", "file_system": "ext4", "size": "400 MiB", "images": ["tiny-b"]},
      {"type": "partition", "mount": "swap", "file_system": "swap", "size": "128 MiB", "images": ["tiny-a", "tiny-b"]}]},
    {"type": "disk", "id": {"type": "name", "value": "vdb"}, "size": "1 GiB", "volumes": [
      {"type": "partition", "mount": "/srv/shared", "file_system": "ext4", "size": "remaining", "images": ["tiny-a", "tiny-b"]}]}]
}`, c.GuestURL("a.tar.gz"), c.GuestURL("b.tar.gz"))
	deploy(t, c, spec, vda, vdb)
	disks := []string{vda, vdb}
	log := boot(t, disks, false, "grep -E ' swap|UUID' /etc/fstab\necho from-a >/srv/shared/note\nsync\nprovisioner switch-default tiny-b")
	expectBoot(t, log, "BOOTED-IMAGE-A")
	if !bytes.Contains(log, []byte("MOUNTED /srv/shared")) || !strings.Contains(cmdOutput(log), " swap ") {
		t.Errorf("image A: the shared partition is not mounted, or fstab has no swap:\n%s", cmdOutput(log))
	}
	log = boot(t, disks, false, "cat /srv/shared/note")
	expectBoot(t, log, "BOOTED-IMAGE-B")
	if !bytes.Contains(log, []byte("MOUNTED /srv/shared")) || !strings.Contains(cmdOutput(log), "from-a") {
		t.Errorf("image B does not see the file image A wrote on the shared partition:\n%s", cmdOutput(log))
	}
}

// TestScenarioSeparateBootAndUtility is scenario 5: a single OS image with a separate
// /boot volume (grub in it, the kernel read from it) and a utility image deployed under
// /srv/tools, which the OS's fstab mounts.
func TestScenarioSeparateBootAndUtility(t *testing.T) {
	needSuite(t)
	c := newConductor(t)
	disk := sparse(t, 2<<30)
	spec := fmt.Sprintf(`{
  "images": [
    {"name": "tiny-a", "url": %q, "target": "/", "boot": true},
    {"name": "tools", "url": %q, "target": "/srv/tools"}],
  "boot_mode": "both",
  "deploy_data": {"kernel_params": "console=ttyS0 quiet panic=-1"},
  "grub": {"timeout": 0},
  "partitions": [{"type": "disk", "id": {"type": "name", "value": "vda"}, "size": "2 GiB", "volumes": [
    {"type": "partition", "mount": "/boot", "file_system": "ext4", "size": "200 MiB", "images": ["tiny-a"]},
    {"type": "partition", "mount": "/", "file_system": "ext4", "size": "600 MiB", "images": ["tiny-a"]},
    {"type": "partition", "mount": "/srv/tools", "file_system": "ext4", "size": "remaining", "images": ["tiny-a", "tools"]}]}]
}`, c.GuestURL("a.tar.gz"), c.GuestURL("tools.tar.gz"))
	bi := deploy(t, c, spec, disk)
	if bi.GrubDir != "grub" || bi.MultibootPartition != "" || len(bi.Elements) != 1 || bi.Elements[0].Filesystems["/boot"] == "" {
		t.Errorf("boot info: %+v", bi)
	}
	for _, uefi := range []bool{false, true} {
		log := boot(t, []string{disk}, uefi, "provisioner list")
		expectBoot(t, log, "BOOTED-IMAGE-A")
		if !bytes.Contains(log, []byte("MOUNTED /boot")) || !bytes.Contains(log, []byte("TOOLS=UTILITY-IMAGE")) || !strings.Contains(cmdOutput(log), "default, booted now") {
			t.Errorf("uefi=%v: /boot or the utility image is not mounted, or list is wrong:\n%s", uefi, log)
		}
	}
}

// TestScenarioFailures is scenario 6 (the bad field is TestRamdiskKexecAndFailure's): an
// image with a wrong checksum is reported with the step, the partition tables are
// erased, and the disk does not boot a half-written OS.
func TestScenarioFailures(t *testing.T) {
	needSuite(t)
	c := newConductor(t)
	disk := sparse(t, 2<<30)
	spec := strings.Replace(oneDiskSpec(c, "bios", "clean", false), fmt.Sprintf("%x", sha256.Sum256(images["b.tar.gz"])), strings.Repeat("0", 64), 1)
	c.Put("spec.json", []byte(spec))
	runVM(t, vmrun.Options{Kernel: ramdisk.Kernel, Initrd: ramdisk.Initramfs, Net: true, Disks: []string{disk}, Timeout: 5 * time.Minute,
		Until:  []byte(failedShell),
		Append: ramdiskArgs(c, "provisioner.spec="+c.GuestURL("spec.json"), "provisioner.prober=builtin")})
	last, _ := c.Last()
	if last.Type != "failed" || last.Step != "images" || !strings.Contains(last.Error, "checksum mismatch") {
		t.Errorf("final event %+v", last)
	}
	if tbl, err := partition.ReadTable(context.Background(), disk, 512); err == nil && len(tbl.Partitions) > 0 {
		t.Errorf("the failed deploy left %d partitions", len(tbl.Partitions))
	}
	// SeaBIOS finds nothing to boot and retries; a minute without a marker is enough.
	res, _ := vmrun.Run(context.Background(), vmrun.Options{Disks: []string{disk}, Dir: t.TempDir(), Timeout: time.Minute, Until: []byte("BOOTED-IMAGE-")})
	if m := marker(res.Serial); m != "" || res.Matched {
		t.Errorf("the disk of a failed deploy booted %q", m)
	}
}

// TestScenarioVerifyKeepsData is scenario 7: a redeploy with partitions_policy verify and
// keep_data on the data volume re-creates the roots but keeps the data volume's files.
func TestScenarioVerifyKeepsData(t *testing.T) {
	needSuite(t)
	c := newConductor(t)
	disk := sparse(t, 2<<30)
	deploy(t, c, oneDiskSpec(c, "bios", "clean", false), disk)
	expectBoot(t, boot(t, []string{disk}, false, "echo kept-across-redeploy >/srv/data/kept\nsync"), "BOOTED-IMAGE-A")
	c2 := newConductor(t)
	bi := deploy(t, c2, oneDiskSpec(c2, "bios", "verify", true), disk)
	if len(bi.Elements) != 2 {
		t.Fatalf("boot info after the redeploy: %+v", bi)
	}
	log := boot(t, []string{disk}, false, "cat /srv/data/kept")
	expectBoot(t, log, "BOOTED-IMAGE-A")
	if !strings.Contains(cmdOutput(log), "kept-across-redeploy") {
		t.Errorf("the kept volume lost its file:\n%s", cmdOutput(log))
	}
}
