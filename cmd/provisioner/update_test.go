package main

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/provisioner/provisioner/internal/engine"
	"github.com/provisioner/provisioner/partition"
)

// partitionHash is the SHA-256 of partition n's bytes in the disk-image file img.
func partitionHash(t *testing.T, img string, n int) string {
	t.Helper()
	h := sha256.New()
	if _, err := io.Copy(h, partitionBytes(t, img, n)); err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%x", h.Sum(nil))
}

// partitionBytes reads partition n of the disk-image file img (closed with the test).
func partitionBytes(t *testing.T, img string, n int) *io.SectionReader {
	t.Helper()
	p := imagePartition(t, img, n)
	f, err := os.Open(img)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return io.NewSectionReader(f, int64(p.Start*512), int64((p.End-p.Start+1)*512))
}

// imagePartition reads partition n of the GPT in the disk-image file img.
func imagePartition(t *testing.T, img string, n int) partition.ExistingPartition {
	t.Helper()
	tab, err := partition.ReadTable(context.Background(), img, 512)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range tab.Partitions {
		if p.Number == n {
			return p
		}
	}
	t.Fatalf("%s has no partition %d", img, n)
	return partition.ExistingPartition{}
}

// ext4Bytes is the size the ext4 superblock of partition n in img gives its filesystem.
func ext4Bytes(t *testing.T, img string, n int) uint64 {
	t.Helper()
	f := partitionBytes(t, img, n)
	sb := make([]byte, 1024)
	if _, err := f.ReadAt(sb, 1024); err != nil {
		t.Fatal(err)
	}
	if binary.LittleEndian.Uint16(sb[56:]) != 0xEF53 {
		t.Fatalf("partition %d of %s holds no ext4 superblock", n, img)
	}
	blocks := uint64(binary.LittleEndian.Uint32(sb[4:])) | uint64(binary.LittleEndian.Uint32(sb[0x150:]))<<32
	return blocks << (10 + binary.LittleEndian.Uint32(sb[24:]))
}

// TestUpdateDiskImage deploys red and blue onto a disk-image file, then updates it
// offline (a loop-device test): a spec with a new blue image and a bigger /srv/data is
// applied (red's root partition byte-identical, blue's entry and the record updated,
// /srv/data's filesystem grown, an update record in the history); the same spec again is
// nothing to do and leaves every byte of the file as it was; the same blue image from
// another URL is a no-op, refused unless --force, naming blue.
func TestUpdateDiskImage(t *testing.T) {
	needLoopCLI(t)
	dir := t.TempDir()
	red, blue, blue2 := "file://"+kernelTar(t, dir, "red"), kernelTar(t, dir, "blue"), kernelTar(t, dir, "blue2")
	img := filepath.Join(dir, "disk.img")
	r := runCLI(t, againstSpec(red, blue, fileDigest(t, blue), 100, 50, false), "deploy", "-", "--device", "vda="+img, "--size", "vda=512MiB", "--seed", "s", "--prober", "builtin", "--boot-info", "")
	if r.code != 0 {
		t.Fatalf("deploy: exit %d\n%s", r.code, r.stderr)
	}
	// bios-boot, multiboot, red's root, blue's root, /srv/data.
	redRoot, dataBefore := partitionHash(t, img, 3), ext4Bytes(t, img, 5)
	next := againstSpec(red, blue2, fileDigest(t, blue2), 100, 80, false)

	r = runCLI(t, next, "update", "-", "--device", "vda="+img)
	if r.code != engine.ExitFailure || !strings.Contains(r.stderr, "--yes") || !strings.Contains(r.stdout, "blue") {
		t.Errorf("update without --yes and no terminal: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	r = runCLI(t, next, "update", "-", "--device", "vda="+img, "--yes")
	if r.code != 0 || !strings.Contains(r.stdout, "updated: the default is red") {
		t.Fatalf("update: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	t.Logf("update:\n%s", r.stdout)
	if got := partitionHash(t, img, 3); got != redRoot {
		t.Error("the update changed red's root partition")
	}
	if got := ext4Bytes(t, img, 5); got != 80<<20 || dataBefore != 50<<20 {
		t.Errorf("/srv/data's filesystem: %d bytes, then %d; want 50 MiB, then 80 MiB", dataBefore, got)
	}
	l := runCLI(t, "", "list", "--device", img, "--json")
	if l.code != 0 || !strings.Contains(l.stdout, fileDigest(t, blue2)) || strings.Contains(l.stdout, fileDigest(t, blue)) {
		t.Errorf("list after the update: exit %d\n%s%s", l.code, l.stdout, l.stderr)
	}
	h := runCLI(t, "", "history", "--device", img, "--json")
	if h.code != 0 || !strings.Contains(h.stdout, `"operation": "update"`) {
		t.Errorf("history after the update: exit %d\n%s%s", h.code, h.stdout, h.stderr)
	}

	sum := fileHash(t, img)
	r = runCLI(t, next, "update", "-", "--device", "vda="+img, "--yes")
	if r.code != 0 || !strings.Contains(r.stdout, "nothing to do") || fileHash(t, img) != sum {
		t.Errorf("the same update again: exit %d, file changed %v\n%s%s", r.code, fileHash(t, img) != sum, r.stdout, r.stderr)
	}

	mirror := filepath.Join(dir, "mirror-blue2.tar")
	data, _ := os.ReadFile(blue2)
	os.WriteFile(mirror, data, 0o644)
	same := againstSpec(red, mirror, fileDigest(t, mirror), 100, 80, false)
	r = runCLI(t, same, "update", "-", "--device", "vda="+img, "--yes")
	if r.code != engine.ExitEnvironment || !strings.Contains(r.stderr, "blue") || fileHash(t, img) != sum {
		t.Errorf("a no-op image without --force: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	r = runCLI(t, same, "update", "-", "--device", "vda="+img, "--yes", "--force")
	if r.code != 0 || !strings.Contains(r.stdout, "updated") {
		t.Errorf("a no-op image with --force: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if got := partitionHash(t, img, 3); got != redRoot {
		t.Error("the forced update changed red's root partition")
	}
}

// greenSpec is againstSpec (100 MiB red root, 50 MiB /srv/data, clean) with red from
// redURL and, when greenURL is set, a third OS image green with its own 40 MiB root after
// /srv/data.
func greenSpec(redURL, blueURL, blueSum, greenURL string) string {
	spec := againstSpec(redURL, blueURL, blueSum, 100, 50, false)
	if greenURL == "" {
		return spec
	}
	spec = strings.Replace(spec, `"target": "/", "checksum"`, `"target": "/", "checksum"`, 1)
	spec = strings.Replace(spec, `"checksum": "`+blueSum+`"}]`, `"checksum": "`+blueSum+`"},
   {"name": "green", "url": "`+greenURL+`", "target": "/"}]`, 1)
	return strings.Replace(spec, `"images": ["red", "blue"]}]}]}`, `"images": ["red", "blue"]},
  {"type": "partition", "mount": "/", "file_system": "ext4", "size": "40 MiB", "images": ["green"]}]}]}`, 1)
}

// TestUpdateDefaultAddRemove: an update that rewrites red, the default, and adds green
// leaves red on trial with blue (untouched) to fall back to, and green in the menu on a
// new partition; removing green from the spec drops its entry and leaves its partition
// where it is; --remove-data then removes the partition (a loop-device test).
func TestUpdateDefaultAddRemove(t *testing.T) {
	needLoopCLI(t)
	dir := t.TempDir()
	red, red2, blue := "file://"+kernelTar(t, dir, "red"), "file://"+kernelTar(t, dir, "red2"), kernelTar(t, dir, "blue")
	green := "file://" + kernelTar(t, dir, "green")
	img := filepath.Join(dir, "disk.img")
	r := runCLI(t, greenSpec(red, blue, fileDigest(t, blue), ""), "deploy", "-", "--device", "vda="+img, "--size", "vda=512MiB", "--seed", "s", "--prober", "builtin", "--boot-info", "")
	if r.code != 0 {
		t.Fatalf("deploy: exit %d\n%s", r.code, r.stderr)
	}
	blueRoot := partitionHash(t, img, 4)
	r = runCLI(t, greenSpec(red2, blue, fileDigest(t, blue), green), "update", "-", "--device", "vda="+img, "--yes", "--tries", "2")
	if r.code != 0 || !strings.Contains(r.stdout, "updated: red boots next on trial (2 tries)") {
		t.Fatalf("update: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	t.Logf("update:\n%s", r.stdout)
	if partitionHash(t, img, 4) != blueRoot {
		t.Error("the update changed blue's root")
	}
	l := runCLI(t, "", "list", "--device", img)
	if l.code != 0 || !strings.Contains(l.stdout, "green") || !strings.Contains(l.stdout, "trial") {
		t.Errorf("list after the update: exit %d\n%s%s", l.code, l.stdout, l.stderr)
	}
	t.Logf("list after the update:\n%s", l.stdout)
	if p := imagePartition(t, img, 6); (p.End-p.Start+1)*512 != 40<<20 {
		t.Errorf("green's partition: %+v", p)
	}

	r = runCLI(t, greenSpec(red2, blue, fileDigest(t, blue), ""), "update", "-", "--device", "vda="+img, "--yes", "--no-trial")
	if r.code != 0 || !strings.Contains(r.stdout, "left alone") {
		t.Fatalf("update removing green: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	l = runCLI(t, "", "list", "--device", img)
	if strings.Contains(l.stdout, "green") {
		t.Errorf("green still in the menu:\n%s", l.stdout)
	}
	imagePartition(t, img, 6) // still there
	r = runCLI(t, greenSpec(red2, blue, fileDigest(t, blue), ""), "update", "-", "--device", "vda="+img, "--yes", "--remove-data")
	if r.code != 0 {
		t.Fatalf("update --remove-data: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	h := runCLI(t, "", "history", "--device", img)
	// The default's move before red is rewritten, then the three updates.
	if h.code != 0 || strings.Count(h.stdout, " update ") != 4 || !strings.Contains(h.stdout, "default moved from red to blue while red is updated") {
		t.Errorf("history: exit %d, want 4 update records\n%s%s", h.code, h.stdout, h.stderr)
	}
	t.Logf("history:\n%s", h.stdout)
	tab, err := partition.ReadTable(context.Background(), img, 512)
	if err != nil || len(tab.Partitions) != 5 {
		t.Errorf("after --remove-data: %v, %+v", err, tab)
	}
}
