package partition

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// writeTo plans doc on one disk of size bytes and sector size lss, and writes the table
// to a sparse file.
func writeTo(t *testing.T, doc string, size, lss uint64) (*DiskLayout, string) {
	t.Helper()
	l := mustPlan(t, doc, map[string]Disk{"vda": {SizeBytes: size, SectorSize: lss}}, "gpt")
	img := filepath.Join(t.TempDir(), "disk.img")
	f, err := os.Create(img)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(int64(size)); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if err := writeGPT(context.Background(), img, l.Disks[0]); err != nil {
		t.Fatal(err)
	}
	return l.Disks[0], img
}

const gptDoc = `{"images": [{"name": "a", "url": "u", "target": "/"}, {"name": "b", "url": "u", "target": "/"}],
 "partitions": [{"type": "disk", "id": {"type": "name", "value": "vda"}, "volumes": [
  {"type": "boot", "size": "300 MiB", "mount": "/boot", "file_system": "ext4", "images": ["a"]},
  {"type": "partition", "mount": "/", "file_system": "ext4", "size": "40%", "images": ["a"]},
  {"type": "partition", "mount": "/", "file_system": "xfs", "size": "remaining", "images": ["b"]},
  {"type": "partition", "mount": "swap", "file_system": "swap", "size": "1 GiB", "images": ["a", "b"]}]}]}`

// TestWriteGPTReadsBack writes tables with 512- and 4096-byte sectors and reads them
// back: every entry as planned. (sgdisk reads regular files as 512-byte disks only, so
// this is the 4Kn check on files; loop devices check it through the kernel.)
func TestWriteGPTReadsBack(t *testing.T) {
	for _, lss := range []uint64{512, 4096} {
		d, img := writeTo(t, gptDoc, 20<<30, lss)
		got, err := ReadTable(context.Background(), img, lss)
		if err != nil {
			t.Fatal(err)
		}
		if got.GUID != d.GUID || len(got.Partitions) != len(d.Partitions) {
			t.Fatalf("%d-byte sectors: read GUID %s with %d partitions, wrote %s with %d", lss, got.GUID, len(got.Partitions), d.GUID, len(d.Partitions))
		}
		for i, p := range d.Partitions {
			e := got.Partitions[i]
			if e.Number != p.Number || e.Start != p.Start || e.End != p.End || e.Type != p.Type || e.GUID != p.GUID || e.Name != p.Name {
				t.Errorf("%d-byte sectors, partition %d: read %+v, planned %d %d-%d %s %s %q", lss, p.Number, e, p.Number, p.Start, p.End, p.Type, p.GUID, p.Name)
			}
		}
		if err := CompareTable(d, got); err != nil {
			t.Errorf("%d-byte sectors: %v", lss, err)
		}
	}
}

func TestWriteGPTAttributesAndSgdisk(t *testing.T) {
	if _, err := exec.LookPath("sgdisk"); err != nil {
		t.Skip("sgdisk not installed")
	}
	d, img := writeTo(t, gptDoc, 20<<30, 512)
	out, err := exec.Command("sgdisk", "-v", img).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "No problems found") {
		t.Fatalf("sgdisk -v: %v\n%s", err, out)
	}
	var boot *Partition
	for _, p := range d.Partitions {
		if p.Role == RoleBoot {
			boot = p
		}
	}
	if boot == nil {
		t.Fatal("the plan has no boot volume")
	}
	out, err = exec.Command("sgdisk", "-A", itoa(boot.Number)+":show", img).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "legacy BIOS bootable") {
		t.Errorf("partition %d attributes: %v\n%s", boot.Number, err, out)
	}
}

// TestWriteGPTLargeDiskPMBR: on a disk of more than 2^32 sectors the protective MBR's
// size field must be 0xFFFFFFFF, which go-diskfs gets wrong.
func TestWriteGPTLargeDiskPMBR(t *testing.T) {
	_, img := writeTo(t, gptDoc, 3<<40, 512)
	f, err := os.Open(img)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, 4)
	if _, err := f.ReadAt(b, 458); err != nil {
		t.Fatal(err)
	}
	if string(b) != "\xff\xff\xff\xff" {
		t.Errorf("protective MBR size = % x, want ff ff ff ff", b)
	}
}

func TestWriteGPTRefusesAResizedDisk(t *testing.T) {
	l := mustPlan(t, gptDoc, map[string]Disk{"vda": {SizeBytes: 20 << 30, SectorSize: 512}}, "gpt")
	img := filepath.Join(t.TempDir(), "disk.img")
	if err := os.WriteFile(img, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(img, 19<<30); err != nil {
		t.Fatal(err)
	}
	err := writeGPT(context.Background(), img, l.Disks[0])
	if err == nil || !strings.Contains(err.Error(), "was planned as") {
		t.Fatalf("err = %v", err)
	}
	if _, err := ReadTable(context.Background(), img, 512); !errors.Is(err, ErrNoGPT) {
		t.Errorf("a refused write left a table: %v", err)
	}
}
