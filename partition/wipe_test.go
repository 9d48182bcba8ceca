package partition

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/provisioner/provisioner/internal/run"
)

// stackedDoc has a volume group and a raid1 array across two disks.
const stackedDoc = `{
  "images": [{"name": "os", "url": "http://x/os.tar.gz", "target": "/"}],
  "boot_mode": "bios",
  "partitions": [
    {"type": "vg", "id": "os", "volumes": [{"type": "lv", "name": "root", "mount": "/", "file_system": "ext4", "size": "20 MiB"}]},
    {"type": "disk", "id": {"type": "name", "value": "vda"}, "size": "400 MiB", "volumes": [
      {"type": "pv", "vg": "os", "size": "120 MiB"},
      {"type": "raid", "mount": "/srv", "file_system": "ext4", "size": "20 MiB", "name": "md0"}]},
    {"type": "disk", "id": {"type": "name", "value": "vdb"}, "size": "400 MiB", "volumes": [
      {"type": "raid", "mount": "/srv", "file_system": "ext4", "size": "20 MiB", "name": "md0"}]}]
}`

// WipeTables deactivates the layout's volume groups, then stops its arrays, then zeroes
// both tables of every disk. Where a partition stays listed (here: image files, which
// the kernel cannot be told about), the release failures are reported with it.
func TestWipeTablesReleasesStacks(t *testing.T) {
	disks := map[string]Disk{"vda": {SizeBytes: 400 << 20, SectorSize: 512}, "vdb": {SizeBytes: 400 << 20, SectorSize: 512}}
	l := mustPlan(t, stackedDoc, disks, "wipe")
	dir := t.TempDir()
	devs := Devices{}
	for name := range disks {
		p := filepath.Join(dir, name+".img")
		if err := os.WriteFile(p, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Truncate(p, 400<<20); err != nil {
			t.Fatal(err)
		}
		f, _ := os.OpenFile(p, os.O_WRONLY, 0)
		f.WriteAt(bytes.Repeat([]byte{0xff}, 4096), 0)
		f.WriteAt(bytes.Repeat([]byte{0xff}, 4096), 400<<20-4096)
		f.Close()
		devs[name] = p
	}
	fake := &run.Fake{Handler: func(c run.Call) (run.Result, error) {
		if c.Argv[0] == "lvm" {
			return run.Result{}, &run.Error{Argv: c.Argv, ExitCode: 5}
		}
		return run.Result{}, nil
	}}
	err := WipeTables(context.Background(), Env{Run: fake}, l, devs)
	var argv []string
	for _, c := range fake.Calls() {
		argv = append(argv, strings.Join(c.Argv, " "))
	}
	if want := []string{"lvm vgchange -an os", "mdadm --stop /dev/md/md0"}; !slices.Equal(argv, want) {
		t.Errorf("ran %q, want %q", argv, want)
	}
	if err == nil || !strings.Contains(err.Error(), "tables wiped, but") || !strings.Contains(err.Error(), "deactivating volume group os") {
		t.Error("WipeTables error:", err)
	}
	for name, p := range devs {
		f, err := os.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		head, tail := make([]byte, 4096), make([]byte, 4096)
		f.ReadAt(head, 0)
		f.ReadAt(tail, 400<<20-4096)
		f.Close()
		if !bytes.Equal(head, make([]byte, 4096)) || !bytes.Equal(tail, make([]byte, 4096)) {
			t.Errorf("disk %s: the tables were not zeroed", name)
		}
	}
}
