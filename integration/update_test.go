//go:build integration

package integration

import (
	"crypto/sha256"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/provisioner/provisioner/internal/vmrun"
)

// updateSpec is a two-image node on one disk (BIOS) with a fixed-size data volume, so
// that the disk keeps about 740 MiB free after the deploy. With next set, it is the
// changed spec of the update: tiny-b comes from b2.tar.gz (image_name "Tiny B 2"), and a
// third image tiny-c (a2's bytes served as c.tar.gz) gets its own new root partition in
// the free space.
//
// With newA also set, tiny-a (the default) comes from a2.tar.gz (image_name "Tiny A 2"):
// an update that rewrites the default image, which then boots on trial.
func updateSpec(c *vmrun.Conductor, next, newA bool) string {
	aName, aFile, bName, bFile, third, thirdRoot := "Tiny A", "a.tar.gz", "Tiny B", "b.tar.gz", "", ""
	if newA {
		aName, aFile = "Tiny A 2", "a2.tar.gz"
	}
	if next {
		bName, bFile = "Tiny B 2", "b2.tar.gz"
		third = fmt.Sprintf(`,
    {"name": "tiny-c", "image_name": "Tiny C", "url": %q, "target": "/", "checksum": "sha256:%x"}`, c.GuestURL("c.tar.gz"), sha256.Sum256(images["a2.tar.gz"]))
		thirdRoot = `,
    {"type": "partition", "mount": "/", "file_system": "ext4", "size": "400 MiB", "images": ["tiny-c"]}`
	}
	return fmt.Sprintf(`{
  "images": [
    {"name": "tiny-a", "image_name": %q, "url": %q, "target": "/", "boot": true, "checksum": "sha256:%x"},
    {"name": "tiny-b", "image_name": %q, "url": %q, "target": "/", "checksum": "sha256:%x"}%s],
  "boot_mode": "bios", "partitions_policy": "clean",
  "deploy_data": {"kernel_params": "console=ttyS0 quiet panic=-1"},
  "grub": {"timeout": 0},
  "partitions": [{"type": "disk", "id": {"type": "name", "value": "vda"}, "size": "2 GiB", "volumes": [
    {"type": "partition", "mount": "/", "file_system": "ext4", "size": "400 MiB", "images": ["tiny-a"]},
    {"type": "partition", "mount": "/", "file_system": "ext4", "size": "400 MiB", "images": ["tiny-b"]},
    {"type": "partition", "mount": "/srv/data", "file_system": "ext4", "size": "300 MiB", "images": ["tiny-a", "tiny-b"]}%s]}]
}`, aName, c.GuestURL(aFile), sha256.Sum256(images[aFile]), bName, c.GuestURL(bFile), sha256.Sum256(images[bFile]), third, thirdRoot)
}

// TestScenarioUpdate updates a deployed two-image node from inside its running image A
// (SeaBIOS, a NIC on QEMU's user network): A writes a file on the data volume, fetches a
// changed spec from the conductor (tiny-b from b2.tar.gz, a third image tiny-c with a new
// root partition in the disk's free space), prints `plan --against`, runs `update --yes`
// (the new partition is told to the kernel while A's root on the same disk is mounted),
// runs it again (nothing to do) and lists the menu. The disk then boots A again (A is
// untouched, so the default stays and nothing is on trial); `switch-default --once` from
// A boots B's new version, which mounts the kept data volume with A's file, and from
// there tiny-c (a2's bytes, so its marker is A2's), whose `history` shows the update
// record with both images' versions. tiny-c then applies a spec that also rewrites the
// default image tiny-a (to a2, "Tiny A 2"): the default moves to tiny-c meanwhile and
// tiny-a boots next on trial; it does, with the data volume's file, and confirms. Its
// history shows that move as the update's (no reload was run).
//
// One deploy and 5 boots of the disk, measured under TCG on 2 shared cores: the deploy
// 28 to 43 s, a boot that updates 23 to 40 s (images downloaded and extracted,
// filesystems made), 8 to 21 s for each other boot; 1.5 to 3 minutes in all with the
// machine's load.
func TestScenarioUpdate(t *testing.T) {
	needSuite(t)
	start := time.Now()
	c := newConductor(t)
	c.Put("c.tar.gz", images["a2.tar.gz"])
	c.Put("update.json", []byte(updateSpec(c, true, false)))
	c.Put("update-a.json", []byte(updateSpec(c, true, true)))
	disk := sparse(t, 2<<30)
	deploy(t, c, updateSpec(c, false, false), disk)
	d := []string{disk}

	// A writes a file on the data volume the update keeps, updates, shows the kernel's
	// partitions (the new one told to it while the root is mounted) and applies the
	// same spec again, which must be nothing to do.
	script := fmt.Sprintf(`wget -q -O /tmp/spec.json %s || exit 9
echo kept-across-update >/srv/data/kept && sync
provisioner plan /tmp/spec.json --against; echo PLAN-RC=$?
echo UPDATE-BEGIN
provisioner update /tmp/spec.json --yes || exit $?
echo UPDATE-END
grep -w 'vda[0-9]' /proc/partitions
echo AGAIN-BEGIN
provisioner update /tmp/spec.json --yes || exit $?
echo AGAIN-END
provisioner list`, c.GuestURL("update.json"))
	vm := time.Now()
	log := bootNet(t, d, nil, false, script)
	t.Logf("the boot that updated the node took %v", time.Since(vm).Round(100*time.Millisecond))
	expectBoot(t, log, "BOOTED-IMAGE-A")
	out := cmdOutput(log)
	t.Logf("plan, update and list in A:\n%s", out)
	plan, rest, _ := strings.Cut(out, "UPDATE-BEGIN")
	upd, rest, _ := strings.Cut(rest, "UPDATE-END")
	parts, rest, _ := strings.Cut(rest, "AGAIN-BEGIN")
	again, list, _ := strings.Cut(rest, "AGAIN-END")
	expectLines(t, "plan --against in A", plan, `PLAN-RC=0`, `(?m)^\s*vda#5\s+kept\s+300 MiB\s.*/srv/data`, `(?m)^\s*vda#6\s+created\s+400 MiB\s.*tiny-c`,
		`(?m)^\s*tiny-a\s+unchanged\s`, `(?m)^\s*tiny-b\s+updated\s+Tiny B \[.*Tiny B 2 \[`, `(?m)^\s*tiny-c\s+added\s`, `default: tiny-a -> tiny-a`)
	expectLines(t, "update in A (want the default kept on tiny-a)", upd, `updated: the default is tiny-a`)
	expectLines(t, "the kernel's partitions after the update (want vda6, 400 MiB)", parts, `(?m)^\s*\d+\s+\d+\s+409600\s+vda6\s*$`)
	expectLines(t, "the same update again in A", again, `nothing to do`, `nothing written`)
	expectLines(t, "list after the update", list, `(?m)^0\s+tiny-a\s+Tiny A\s.*default, booted now`, `(?m)^1\s+tiny-b\s+Tiny B 2\s`, `(?m)^2\s+tiny-c\s+Tiny C\s`)
	if t.Failed() {
		t.FailNow()
	}

	expectBoot(t, boot(t, d, false, "provisioner switch-default --once tiny-b"), "BOOTED-IMAGE-A")
	log = boot(t, d, false, "cat /srv/data/kept\nprovisioner switch-default --once tiny-c")
	expectBoot(t, log, "BOOTED-IMAGE-B2")
	expectLines(t, "B2 (want the data volume mounted, with A's file)", string(log), `MOUNTED /srv/data`, `kept-across-update`)
	// tiny-c shows the history, then updates the default image tiny-a to a2 (with two
	// tries): the default moves to tiny-c while tiny-a is rewritten, and tiny-a boots next
	// on trial.
	log = bootNet(t, d, nil, false, fmt.Sprintf(`provisioner history; provisioner list
echo UPDATE-BEGIN
wget -q -O /tmp/spec.json %s || exit 9
provisioner update /tmp/spec.json --yes --tries 2 || exit $?
echo UPDATE-END
provisioner list`, c.GuestURL("update-a.json")))
	expectBoot(t, log, "BOOTED-IMAGE-A2")
	out = cmdOutput(log)
	t.Logf("history, list, the update of tiny-a and list in tiny-c:\n%s", out)
	hist, rest, _ := strings.Cut(out, "UPDATE-BEGIN")
	upd, list, _ = strings.Cut(rest, "UPDATE-END")
	short := func(name string) string { return fmt.Sprintf("%x", sha256.Sum256(images[name]))[:8] }
	rec := fmt.Sprintf(`(?m)^\S+\s+update\s.*tiny-b: Tiny B %s -> Tiny B 2 %s, tiny-c: Tiny C %s\s+ok; default tiny-a`, short("b.tar.gz"), short("b2.tar.gz"), short("a2.tar.gz"))
	expectLines(t, "history and list in tiny-c", hist, rec, `(?m)^0\s+tiny-a\s.*default`, `(?m)^2\s+tiny-c\s.*booted now`)
	expectLines(t, "the update of tiny-a in tiny-c", upd, `(?m)^\s*tiny-a\s+updated\s+Tiny A \[.*Tiny A 2 \[`, `default: tiny-a -> tiny-a`,
		`the default moved from tiny-a to tiny-c`, `updated: tiny-a boots next on trial \(2 tries\)`)
	expectLines(t, "list after the update of tiny-a", list, `(?m)^0\s+tiny-a\s+Tiny A 2\s.*on trial \(2 of 2 tries left\)`, `(?m)^2\s+tiny-c\s.*default, booted now`)
	if t.Failed() {
		t.FailNow()
	}

	// The new tiny-a (a2's bytes too: its marker is A2's, its root is tiny-a's) boots on
	// trial, mounts the kept data volume and confirms.
	log = boot(t, d, false, "cat /srv/data/kept\nprovisioner list && provisioner confirm && echo CONFIRMED && provisioner list && provisioner history --image tiny-a")
	expectBoot(t, log, "BOOTED-IMAGE-A2")
	out = cmdOutput(log)
	t.Logf("tiny-a on trial:\n%s", out)
	before, after, _ := strings.Cut(out, "CONFIRMED")
	expectLines(t, "tiny-a on trial, before confirm", before, `kept-across-update`, `(?m)^0\s+tiny-a\s+Tiny A 2\s.*on trial.*booted now`)
	expectLines(t, "tiny-a after confirm", after, `(?m)^0\s+tiny-a\s+Tiny A 2\s.*default, booted now`,
		`(?m)^\S+\s+update\s+-\s+tiny-a \(.*\) -> tiny-c \(.*\)\s+ok; default moved from tiny-a to tiny-c while tiny-a is updated`,
		fmt.Sprintf(`(?m)^\S+\s+update\s.*tiny-a: Tiny A %s -> Tiny A 2 %s\s+ok; tiny-a boots next on trial`, short("a.tar.gz"), short("a2.tar.gz")), `(?m)^\S+\s+confirm\s.*ok`)
	if regexp.MustCompile(`(?m)^\S+\s+reload\s`).MatchString(after) {
		t.Errorf("the history shows a reload, and none was run:\n%s", after)
	}
	t.Logf("the scenario took %v", time.Since(start).Round(time.Second))
}

// expectLines checks that out matches each regular expression, naming what out is.
func expectLines(t *testing.T, what, out string, res ...string) {
	t.Helper()
	for _, re := range res {
		if !regexp.MustCompile(re).MatchString(out) {
			t.Errorf("%s lacks %s:\n%s", what, re, out)
		}
	}
}
