//go:build integration

package integration

import (
	"crypto/sha256"
	"fmt"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/provisioner/provisioner/internal/vmrun"
)

// reloadFiles are the images a booted A reloads B from, on the data disk: the new B,
// the one whose kernel panics, the one grub cannot load, and the first half of the new
// B, as a download cut for good would leave it.
func reloadFiles() map[string][]byte {
	b2 := images["b2.tar.gz"]
	return map[string][]byte{
		"b2.tar.gz":       b2,
		"bpanic.tar.gz":   images["bpanic.tar.gz"],
		"bcorrupt.tar.gz": images["bcorrupt.tar.gz"],
		"cut.tar.gz":      b2[:len(b2)/2],
	}
}

// reloadB is the command that reloads tiny-b from file on the data disk (mounted by
// mountData first), checked against the digest of image (the full image even when file
// is a cut copy), with tries boots on trial.
func reloadB(file, image string, tries int) string {
	return fmt.Sprintf("provisioner reload tiny-b --url file:///tmp/data/%s --checksum sha256:%x --tries %d", file, sha256.Sum256(images[image]), tries)
}

// rollbackRE matches what list or history say about a trial grub rolled back.
var rollbackRE = regexp.MustCompile(`(?i)rolled back|rollback|trial of [^\n]*failed`)

// grubErrorRE matches an error grub prints on the serial console.
var grubErrorRE = regexp.MustCompile(`error: [^\r\n]*`)

// TestScenarioReloadTrialBIOS reloads B from inside A under SeaBIOS, four ways. A good
// image boots on trial and stays after confirm; an image whose kernel panics boots
// exactly --tries times, then A comes back by itself and list and history say so; an
// image whose kernel grub cannot load falls back to A in the same boot (no key to
// press); a download cut for good exits 4 and A stays the default.
//
// One deploy (about 75 s under TCG) and 9 boots of the disk (20 to 35 s each; the
// panicking ones are shorter), 5 to 6 minutes in all: A reloads b2; B2 on trial, confirms; B2 as default, switches to A;
// A reloads bpanic; BPANIC twice; A by itself, lists and reloads bcorrupt; grub's
// error then A, which reloads the cut image; A.
func TestScenarioReloadTrialBIOS(t *testing.T) {
	needSuite(t)
	c := newConductor(t)
	disk := sparse(t, 2<<30)
	deploy(t, c, oneDiskSpec(c, "bios", "clean", false), disk)
	d, data := []string{disk}, []string{dataDisk(t, reloadFiles())}
	mnt := mountData("/dev/vdb")

	log := bootWith(t, d, data, false, mnt+reloadB("b2.tar.gz", "b2.tar.gz", 3)+" && provisioner list")
	expectBoot(t, log, "BOOTED-IMAGE-A")
	if out := cmdOutput(log); !strings.Contains(out, "tiny-b") || !strings.Contains(strings.ToLower(out), "trial") {
		t.Errorf("reload and list in A (want tiny-b on trial):\n%s", out)
	}
	log = boot(t, d, false, "provisioner list && provisioner confirm && provisioner list")
	expectBoot(t, log, "BOOTED-IMAGE-B2")
	if out := cmdOutput(log); !regexp.MustCompile(`(?m)^1\s+tiny-b\s.*default, booted now`).MatchString(out) {
		t.Errorf("list, confirm, list in B2 (want tiny-b the default after confirm):\n%s", out)
	}
	expectBoot(t, boot(t, d, false, "provisioner switch-default tiny-a"), "BOOTED-IMAGE-B2")

	expectBoot(t, bootWith(t, d, data, false, mnt+reloadB("bpanic.tar.gz", "bpanic.tar.gz", 2)), "BOOTED-IMAGE-A")
	for i := 1; i <= 2; i++ {
		log = boot(t, d, false, "")
		expectBoot(t, log, "BOOTED-IMAGE-BPANIC")
		if !strings.Contains(string(log), "Kernel panic") {
			t.Errorf("boot %d of the panicking image did not panic", i)
		}
	}
	log = bootWith(t, d, data, false, "provisioner list; provisioner history; echo RELOAD-BCORRUPT\n"+mnt+reloadB("bcorrupt.tar.gz", "bcorrupt.tar.gz", 2))
	expectBoot(t, log, "BOOTED-IMAGE-A")
	if out, _, _ := strings.Cut(cmdOutput(log), "RELOAD-BCORRUPT"); !rollbackRE.MatchString(out) || !strings.Contains(out, "tiny-b") {
		t.Errorf("list and history in A after two panics (want tiny-b's trial rolled back):\n%s", out)
	}

	start := time.Now()
	log = bootWith(t, d, data, false, mnt+reloadB("cut.tar.gz", "b2.tar.gz", 2)+"\necho RC=$?")
	t.Logf("the boot that fell back from the corrupt kernel to A took %v", time.Since(start).Round(100*time.Millisecond))
	expectBoot(t, log, "BOOTED-IMAGE-A")
	if e := grubErrorRE.FindIndex(log); e == nil || e[0] > strings.Index(string(log), "BOOTED-IMAGE-A") {
		t.Errorf("no grub error before A came up (want the corrupt kernel's)")
	} else {
		t.Logf("grub said %q", log[e[0]:e[1]])
	}
	if out := cmdOutput(log); !strings.Contains(out, "RC=4") {
		t.Errorf("reload from a cut image in A (want exit 4):\n%s", out)
	}
	log = boot(t, d, false, "provisioner list")
	expectBoot(t, log, "BOOTED-IMAGE-A")
	if out := cmdOutput(log); !regexp.MustCompile(`(?m)^0\s+tiny-a\s.*default`).MatchString(out) {
		t.Errorf("list in A after the cut reload (want tiny-a the default):\n%s", out)
	}
}

// TestScenarioReloadTrialUEFI is the good reload of TestScenarioReloadTrialBIOS under
// OVMF: A reloads b2 with two tries, B2 boots on trial and confirms, B2 boots again as
// the default. One deploy (about 75 s under TCG) and 3 boots (OVMF adds a few seconds to
// the 20 to 35 s of a boot), about 3 minutes in all.
func TestScenarioReloadTrialUEFI(t *testing.T) {
	needSuite(t)
	if _, err := os.Stat(vmrun.OVMFCode); err != nil {
		t.Fatalf("OVMF is missing (make test installs ovmf): %v", err)
	}
	c := newConductor(t)
	disk := sparse(t, 2<<30)
	deploy(t, c, oneDiskSpec(c, "uefi", "clean", false), disk)
	d, data := []string{disk}, []string{dataDisk(t, map[string][]byte{"b2.tar.gz": images["b2.tar.gz"]})}

	log := bootWith(t, d, data, true, mountData("/dev/vdb")+reloadB("b2.tar.gz", "b2.tar.gz", 2)+" && provisioner list")
	expectBoot(t, log, "BOOTED-IMAGE-A")
	log = boot(t, d, true, "provisioner confirm && provisioner list")
	expectBoot(t, log, "BOOTED-IMAGE-B2")
	if out := cmdOutput(log); !regexp.MustCompile(`(?m)^1\s+tiny-b\s.*default, booted now`).MatchString(out) {
		t.Errorf("confirm and list in B2 (want tiny-b the default):\n%s", out)
	}
	expectBoot(t, boot(t, d, true, ""), "BOOTED-IMAGE-B2")
}
