//go:build integration

package integration

import (
	"crypto/sha256"
	"fmt"
	"os"
	"testing"

	"github.com/provisioner/provisioner/internal/vmrun"
)

// bareonOverheadMiB is what Bareon added to a disk besides the document's volumes: GPT,
// alignment and its boot partitions. A document whose volumes leave exactly this much free
// (plus a 100 MiB multiboot partition with two or more images) was deployed by Bareon.
const bareonOverheadMiB = 24

// tightSpec is a Bareon-shaped document (no boot_mode, no partitions_policy) for a disk
// of diskMiB whose volumes leave Bareon's overhead free and nothing more: with two
// images, two 300 MiB roots and a data volume of the rest less the multiboot partition;
// with one, a root of the rest.
func tightSpec(c *vmrun.Conductor, diskMiB int, two bool) string {
	img := func(name, file string, boot bool) string {
		return fmt.Sprintf(`{"name": %q, "image_name": %q, "url": %q, "target": "/", "boot": %v, "checksum": "sha256:%x"}`,
			name, name, c.GuestURL(file), boot, sha256.Sum256(images[file]))
	}
	free := diskMiB - bareonOverheadMiB
	imgs, volumes := img("tiny-a", "a.tar.gz", true), fmt.Sprintf(`{"type": "partition", "mount": "/", "file_system": "ext4", "size": "%d MiB", "images": ["tiny-a"]}`, free)
	if two {
		free -= 100 // the multiboot partition
		imgs += ", " + img("tiny-b", "b.tar.gz", false)
		volumes = fmt.Sprintf(`{"type": "partition", "mount": "/", "file_system": "ext4", "size": "300 MiB", "images": ["tiny-a"]},
    {"type": "partition", "mount": "/", "file_system": "ext4", "size": "300 MiB", "images": ["tiny-b"]},
    {"type": "partition", "mount": "/srv/data", "file_system": "ext4", "size": "%d MiB", "images": ["tiny-a", "tiny-b"]}`, free-600)
	}
	return fmt.Sprintf(`{
  "images": [%s],
  "deploy_data": {"kernel_params": "console=ttyS0 quiet panic=-1"},
  "grub": {"timeout": 0},
  "partitions": [{"type": "disk", "id": {"type": "name", "value": "vda"}, "size": "%d MiB", "volumes": [
    %s]}]
}`, imgs, diskMiB, volumes)
}

// TestScenarioBareonTightDisk deploys Bareon-shaped documents whose volumes fill their
// disk as Bareon allowed (its overhead and nothing more), with our default boot mode
// (both): each disk boots under OVMF from its small ESP and under SeaBIOS.
func TestScenarioBareonTightDisk(t *testing.T) {
	needSuite(t)
	if _, err := os.Stat(vmrun.OVMFCode); err != nil {
		t.Fatalf("OVMF is missing (make test installs ovmf): %v", err)
	}
	t.Run("two images", func(t *testing.T) {
		c := newConductor(t)
		const diskMiB = 1024
		disk := sparse(t, diskMiB<<20)
		bi := deploy(t, c, tightSpec(c, diskMiB, true), disk)
		if bi.MultibootPartition == "" || len(bi.Elements) != 2 {
			t.Fatalf("boot-info: multiboot partition %q, %d entries; want one and 2", bi.MultibootPartition, len(bi.Elements))
		}
		d := []string{disk}
		expectBoot(t, boot(t, d, false, ""), "BOOTED-IMAGE-A")
		expectBoot(t, boot(t, d, true, ""), "BOOTED-IMAGE-A")
	})
	t.Run("one image", func(t *testing.T) {
		c := newConductor(t)
		const diskMiB = 512
		disk := sparse(t, diskMiB<<20)
		deploy(t, c, tightSpec(c, diskMiB, false), disk)
		d := []string{disk}
		// OVMF finds nothing to boot without the ESP.
		expectBoot(t, boot(t, d, true, ""), "BOOTED-IMAGE-A")
		expectBoot(t, boot(t, d, false, ""), "BOOTED-IMAGE-A")
	})
}
