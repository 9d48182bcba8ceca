package main

import (
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/provisioner/provisioner/internal/engine"
	"github.com/provisioner/provisioner/partition"
)

// againstSpec is a BIOS spec of two OS images, red (the default, from redURL) and blue
// (from blueURL with blueSum), each with a root of rootMiB (red) or 100 MiB (blue), and a
// /srv/data volume of dataMiB both mount, at the end of a 512 MiB disk vda with room to
// grow. keep puts keep_data on /srv/data under partitions_policy nailgun_legacy; without
// it the policy is clean.
func againstSpec(redURL, blueURL, blueSum string, rootMiB, dataMiB int, keep bool) string {
	policy, keepData := "clean", ""
	if keep {
		policy, keepData = "nailgun_legacy", `, "keep_data": true`
	}
	return fmt.Sprintf(`{"images": [
   {"name": "red", "url": "%s", "target": "/", "boot": true},
   {"name": "blue", "image_name": "Blue OS", "url": "%s", "target": "/", "checksum": "%s"}],
 "boot_mode": "bios", "partitions_policy": "%s",
 "partitions": [{"type": "disk", "id": {"type": "name", "value": "vda"}, "volumes": [
  {"type": "partition", "mount": "/", "file_system": "ext4", "size": "%d MiB", "images": ["red"]},
  {"type": "partition", "mount": "/", "file_system": "ext4", "size": "100 MiB", "images": ["blue"]},
  {"type": "partition", "mount": "/srv/data", "file_system": "ext4", "size": "%d MiB", "images": ["red", "blue"]%s}]}]}`,
		redURL, blueURL, blueSum, policy, rootMiB, dataMiB, keepData)
}

// fileDigest is "sha256:<hex>" of the file at path.
func fileDigest(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("sha256:%x", sha256.Sum256(b))
}

// againstCase is one changed spec compared with the deployed disk image.
type againstCase struct {
	name string
	spec string
	code int
	// check looks at the decoded JSON break-down; text is the text rendering.
	check func(t *testing.T, b *partition.Breakdown, text string)
}

// TestPlanAgainstDiskImage deploys a spec onto a disk-image file, then compares changed
// specs with it through plan --against --device (a loop-device test): the same spec has
// nothing to do, a new blue image is an update, a bigger /srv/data is grown, a keep_data
// /srv/data moved by a bigger red root is refused with exit code 3. The image file's bytes
// are the same after every run.
func TestPlanAgainstDiskImage(t *testing.T) {
	needLoopCLI(t)
	dir := t.TempDir()
	red, blue, blue2 := "file://"+kernelTar(t, dir, "red"), kernelTar(t, dir, "blue"), kernelTar(t, dir, "blue2")
	deployed := againstSpec(red, blue, fileDigest(t, blue), 100, 50, false)
	img := filepath.Join(dir, "disk.img")
	r := runCLI(t, deployed, "deploy", "-", "--device", "vda="+img, "--size", "vda=512MiB", "--seed", "s", "--prober", "builtin", "--boot-info", "")
	if r.code != 0 {
		t.Fatalf("deploy: exit %d\n%s", r.code, r.stderr)
	}
	sum := fileHash(t, img)
	for _, c := range []againstCase{
		{"same spec", deployed, engine.ExitOK, checkNothingToDo},
		{"blue updated", againstSpec(red, blue2, fileDigest(t, blue2), 100, 50, false), engine.ExitOK, checkBlueUpdated},
		{"data grown", againstSpec(red, blue, fileDigest(t, blue), 100, 80, false), engine.ExitOK, checkDataGrown},
		{"keep_data moved", againstSpec(red, blue, fileDigest(t, blue), 150, 50, true), engine.ExitEnvironment, checkKeepDataRefused},
	} {
		t.Run(c.name, func(t *testing.T) {
			text := runCLI(t, c.spec, "plan", "-", "--against", "--device", "vda="+img)
			js := runCLI(t, c.spec, "plan", "-", "--against", "--device", "vda="+img, "--json")
			if text.code != c.code || js.code != c.code {
				t.Fatalf("exit %d (text), %d (json), want %d\n%s%s%s", text.code, js.code, c.code, text.stdout, text.stderr, js.stderr)
			}
			var b partition.Breakdown
			if err := json.Unmarshal([]byte(js.stdout), &b); err != nil {
				t.Fatalf("JSON break-down: %v\n%s", err, js.stdout)
			}
			if first, _, _ := strings.Cut(text.stdout, "\n"); first != b.Summary {
				t.Errorf("text starts with %q, the JSON summary is %q", first, b.Summary)
			}
			c.check(t, &b, text.stdout)
			t.Logf("plan --against, exit %d:\n%s%s", text.code, text.stdout, text.stderr)
			if got := fileHash(t, img); got != sum {
				t.Errorf("plan --against changed the disk image (sha256 %s, was %s)", got, sum)
			}
		})
	}
	r = runCLI(t, deployed, "plan", "-", "--against", "--device", "vda="+img, "--seed", "x")
	if r.code != engine.ExitFailure || !strings.Contains(r.stderr, "--seed and --against exclude each other") {
		t.Errorf("--seed with --against: exit %d\n%s", r.code, r.stderr)
	}
	r = runCLI(t, deployed, "plan", "-", "--against", "--device", "vda=512MiB")
	if r.code != engine.ExitFailure || !strings.Contains(r.stderr, "not a size") {
		t.Errorf("a simulated disk with --against: exit %d\n%s", r.code, r.stderr)
	}
}

// checkNothingToDo: the five partitions kept, both images unchanged, the default red.
func checkNothingToDo(t *testing.T, b *partition.Breakdown, text string) {
	if !b.NothingToDo || !strings.HasPrefix(text, "nothing to do: 2 images unchanged, 5 volumes kept\n") {
		t.Errorf("not nothing to do:\n%s", text)
	}
	if bc := b.Bootloader; bc.DefaultBefore != "red" || bc.DefaultAfter != "red" {
		t.Errorf("default %q -> %q", bc.DefaultBefore, bc.DefaultAfter)
	}
}

// checkBlueUpdated: blue is updated from the deployed digest to the new one, its entry
// changes, the volumes are kept.
func checkBlueUpdated(t *testing.T, b *partition.Breakdown, text string) {
	im := breakdownImage(t, b, "blue")
	if im.Action != partition.ImageUpdated || im.From == nil || im.To == nil || im.From.Digest == im.To.Digest || !strings.HasPrefix(im.To.Digest, "sha256:") {
		t.Errorf("blue: %+v (from %+v to %+v)", im, im.From, im.To)
	}
	if breakdownImage(t, b, "red").Action != partition.ImageUnchanged || strings.Join(b.Bootloader.Changed, ",") != "blue" {
		t.Errorf("red or the menu changed:\n%s", text)
	}
	for _, v := range b.Volumes {
		if v.Action != partition.ActionKept {
			t.Errorf("volume %s %s", v.Name, v.Action)
		}
	}
}

// checkDataGrown: /srv/data, the last partition, grows in place from 50 to 80 MiB.
func checkDataGrown(t *testing.T, b *partition.Breakdown, text string) {
	v := breakdownVolume(t, b, "/srv/data")
	if v.Action != partition.ActionGrown || v.FromBytes != 50<<20 || v.ToBytes != 80<<20 || v.DataLost {
		t.Errorf("/srv/data: %+v\n%s", v, text)
	}
	if !strings.Contains(text, "1 grown") || !strings.Contains(text, "nothing destroyed") {
		t.Errorf("summary:\n%s", text)
	}
}

// checkKeepDataRefused: /srv/data has keep_data and would be moved: refused, with the
// reason in the break-down and in its text.
func checkKeepDataRefused(t *testing.T, b *partition.Breakdown, text string) {
	v := breakdownVolume(t, b, "/srv/data")
	found := false
	for _, r := range b.Refusals {
		found = found || r.Volume == v.Name && strings.Contains(r.Reason, "has keep_data and would be re-created")
	}
	if !found || !v.KeepData || !v.DataLost {
		t.Errorf("no keep_data refusal of %s (%+v): %+v", v.Name, v, b.Refusals)
	}
	if !strings.HasPrefix(text, "REFUSED: ") || !strings.Contains(text, "refused, nothing is written:") {
		t.Errorf("text:\n%s", text)
	}
}

// breakdownImage returns the break-down's change of the image name, or fails.
func breakdownImage(t *testing.T, b *partition.Breakdown, name string) partition.ImageChange {
	t.Helper()
	for _, im := range b.Images {
		if im.Name == name {
			return im
		}
	}
	t.Fatalf("no image %s in %+v", name, b.Images)
	return partition.ImageChange{}
}

// breakdownVolume returns the last change of the volume mounted at mount, or fails.
func breakdownVolume(t *testing.T, b *partition.Breakdown, mount string) partition.VolumeChange {
	t.Helper()
	for i := len(b.Volumes) - 1; i >= 0; i-- {
		if b.Volumes[i].Mount == mount {
			return b.Volumes[i]
		}
	}
	t.Fatalf("no volume %s in %+v", mount, b.Volumes)
	return partition.VolumeChange{}
}

// twoDiskSpec is a BIOS spec of red and blue on disk vda and a /srv both mount on disk
// vdb; vdbFirst lists vdb first, which moves the multiboot partition to it.
func twoDiskSpec(red, blue string, vdbFirst bool) string {
	vda := `{"type": "disk", "id": {"type": "name", "value": "vda"}, "volumes": [
  {"type": "partition", "mount": "/", "file_system": "ext4", "size": "100 MiB", "images": ["red"]},
  {"type": "partition", "mount": "/", "file_system": "ext4", "size": "100 MiB", "images": ["blue"]}]}`
	vdb := `{"type": "disk", "id": {"type": "name", "value": "vdb"}, "volumes": [
  {"type": "partition", "mount": "/srv", "file_system": "ext4", "size": "50 MiB", "images": ["red", "blue"]}]}`
	disks := vda + ", " + vdb
	if vdbFirst {
		disks = vdb + ", " + vda
	}
	return fmt.Sprintf(`{"images": [
   {"name": "red", "url": "%s", "target": "/", "boot": true},
   {"name": "blue", "url": "%s", "target": "/"}],
 "boot_mode": "bios", "partitions": [%s]}`, red, blue, disks)
}

// TestPlanAgainstTwoDisks: a node deployed on two disk-image files is compared through
// both --device mappings: the same spec has nothing to do; a spec listing the data disk
// first still finds the boot files on the second and breaks down the move of the multiboot
// partition. Neither file changes.
func TestPlanAgainstTwoDisks(t *testing.T) {
	needLoopCLI(t)
	dir := t.TempDir()
	red, blue := "file://"+kernelTar(t, dir, "red"), kernelTar(t, dir, "blue")
	vda, vdb := filepath.Join(dir, "vda.img"), filepath.Join(dir, "vdb.img")
	r := runCLI(t, twoDiskSpec(red, blue, false), "deploy", "-", "--device", "vda="+vda, "--device", "vdb="+vdb,
		"--size", "vda=400MiB", "--size", "vdb=200MiB", "--seed", "s", "--prober", "builtin", "--boot-info", "")
	if r.code != 0 {
		t.Fatalf("deploy: exit %d\n%s", r.code, r.stderr)
	}
	sums := [2]string{fileHash(t, vda), fileHash(t, vdb)}
	devices := []string{"--device", "vdb=" + vdb, "--device", "vda=" + vda}
	r = runCLI(t, twoDiskSpec(red, blue, false), append([]string{"plan", "-", "--against"}, devices...)...)
	if r.code != 0 || !strings.HasPrefix(r.stdout, "nothing to do: 2 images unchanged, 6 volumes kept\n") {
		t.Errorf("same spec: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	r = runCLI(t, twoDiskSpec(red, blue, true), append([]string{"plan", "-", "--against", "--json"}, devices...)...)
	var b partition.Breakdown
	if err := json.Unmarshal([]byte(r.stdout), &b); err != nil || r.code != 0 {
		t.Fatalf("vdb first: exit %d, %v\n%s%s", r.code, err, r.stdout, r.stderr)
	}
	moved := map[string]partition.VolumeAction{}
	for _, v := range b.Volumes {
		if v.Role == "multiboot" {
			moved[v.Disk] = v.Action
		}
	}
	if moved["vda"] != partition.ActionDestroyed || moved["vdb"] != partition.ActionCreated {
		t.Errorf("multiboot partition: %v\n%s", moved, b.Summary)
	}
	if got := [2]string{fileHash(t, vda), fileHash(t, vdb)}; got != sums {
		t.Error("plan --against changed a disk image")
	}
}
