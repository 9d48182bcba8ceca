package partition

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/provisioner/provisioner/internal/run"
)

// bareonFieldsDoc uses fields of Bareon's documents the planner acts on: a partition
// GUID (in lower case), an upper-case file_system, a raid named as mdadm allows but not
// "mdN", and a filesystem label on a logical volume under Bareon's key, disk_label.
const bareonFieldsDoc = `{"images": [{"name": "os", "url": "u", "target": "/", "boot": 1}],
 "boot_mode": "bios",
 "partitions": [
  {"type": "disk", "id": {"type": "name", "value": "sda"}, "size": "4 GiB", "volumes": [
    {"type": "partition", "mount": "/", "file_system": "EXT4", "size": "2 GiB", "partition_guid": "0f1e2d3c-4b5a-4978-8695-a4b3c2d1e0f9"},
    {"type": "raid", "mount": "/boot", "file_system": "ext4", "size": "256 MiB", "name": "Boot"},
    {"type": "pv", "vg": "data", "size": "remaining"}]},
  {"type": "disk", "id": {"type": "name", "value": "sdb"}, "size": "1 GiB", "volumes": [
    {"type": "raid", "mount": "/boot", "file_system": "ext4", "size": "256 MiB", "name": "/dev/md/Boot"}]},
  {"type": "vg", "id": "data", "volumes": [
    {"type": "lv", "name": "srv", "mount": "/srv", "file_system": "Xfs", "size": "remaining", "disk_label": "srvdata"}]}]}`

func TestPlanBareonFields(t *testing.T) {
	l := mustPlan(t, bareonFieldsDoc, nil, "fields")
	sda := diskByID(t, l, "sda")
	if got, want := sda.Partitions[1].GUID, "0F1E2D3C-4B5A-4978-8695-A4B3C2D1E0F9"; got != want {
		t.Errorf("root partition GUID %s, want the document's %s (%+v)", got, want, sda.Partitions[1])
	}
	if len(l.RAIDs) != 1 || l.RAIDs[0].Device() != "/dev/md/Boot" {
		t.Fatalf("raids %+v, want one /dev/md/Boot", l.RAIDs)
	}
	lv := l.VGs[0].LVs[0]
	if lv.FS == nil || lv.FS.Label != "srvdata" || lv.FS.Type != "xfs" {
		t.Fatalf("lv filesystem %+v, want xfs labelled srvdata", lv.FS)
	}

	actions, err := CleanActions(l, sdDevs)
	if err != nil {
		t.Fatal(err)
	}
	fake := &run.Fake{}
	if err := Execute(context.Background(), Env{Run: fake}, programs(actions), Hooks{}); err != nil {
		t.Fatal(err)
	}
	got := fake.Commands()
	for _, want := range []string{
		"mdadm --create /dev/md/Boot --run --metadata=1.2 --level=1 --raid-devices=2 --uuid=" + mdadmUUID(l.RAIDs[0].UUID) + " --name=Boot --homehost=any /dev/sda3 /dev/sdb2",
		"mkfs.xfs -f -q -m uuid=" + lv.FS.UUID + " -L srvdata /dev/data/srv",
		"mke2fs -F -q -t ext4 -U " + sda.Partitions[1].FS.UUID + " -L os /dev/sda2",
	} {
		if !slices.Contains(got, want) {
			t.Errorf("no command %q in:\n%s", want, strings.Join(got, "\n"))
		}
	}
}

// TestPlanSkipsZeroSizeAtATakenMount plans a volume of size zero at a mount point
// another volume of the same image holds: it is left out, and the image mounts the
// other volume there.
func TestPlanSkipsZeroSizeAtATakenMount(t *testing.T) {
	l := mustPlan(t, `{"images": [{"name": "os", "url": "u", "target": "/"}],
	 "partitions": [{"type": "disk", "id": {"type": "name", "value": "vda"}, "size": "4 GiB", "volumes": [
	   {"type": "partition", "mount": "/", "file_system": "ext4", "size": 0},
	   {"type": "partition", "mount": "/", "file_system": "ext4", "size": "2 GiB"}]}]}`, nil, "zero")
	im := imageByName(t, l, "os")
	if paths := mountPaths(im); !slices.Equal(paths, []string{"/"}) {
		t.Fatalf("mounts %v, want one at /", paths)
	}
	if m := im.MountAt("/"); m == nil || !strings.HasPrefix(m.Device, "vda") {
		t.Errorf("root mount %+v", m)
	}
}
