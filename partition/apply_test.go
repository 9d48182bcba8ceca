package partition

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/provisioner/provisioner/internal/run"
)

const lvmRaidDoc = `{"images": [{"name": "os", "url": "u", "target": "/"}],
 "boot_mode": "bios",
 "partitions": [
  {"type": "disk", "id": {"type": "name", "value": "sda"}, "size": "8 GiB", "volumes": [
    {"type": "raid", "mount": "/boot", "file_system": "ext4", "size": "512 MiB"},
    {"type": "pv", "vg": "os", "size": "remaining", "lvm_meta_size": "16"}]},
  {"type": "disk", "id": {"type": "name", "value": "sdb"}, "size": "8 GiB", "volumes": [
    {"type": "raid", "mount": "/boot", "file_system": "ext4", "size": "512 MiB"},
    {"type": "pv", "vg": "os", "size": "remaining"}]},
  {"type": "vg", "id": "os", "volumes": [
    {"type": "lv", "name": "root", "mount": "/", "file_system": "xfs", "size": "4 GiB"},
    {"type": "lv", "name": "swap", "mount": "swap", "file_system": "swap", "size": "remaining"}]}]}`

var sdDevs = Devices{"sda": "/dev/sda", "sdb": "/dev/sdb"}

// programs keeps the steps that run programs: the ones a fake runner can stand in for.
func programs(actions []Action) []Action {
	var out []Action
	for _, a := range actions {
		if len(a.Argv) > 0 {
			out = append(out, a)
		}
	}
	return out
}

func TestCleanActionsRunMdadmLVMAndMkfs(t *testing.T) {
	l := mustPlan(t, lvmRaidDoc, nil, "apply")
	actions, err := CleanActions(l, sdDevs)
	if err != nil {
		t.Fatal(err)
	}
	fake := &run.Fake{}
	if err := Execute(context.Background(), Env{Run: fake}, programs(actions), Hooks{}); err != nil {
		t.Fatal(err)
	}
	want := []string{
		"mdadm --create /dev/md/md0 --run --metadata=1.2 --level=1 --raid-devices=2 --uuid=" + mdadmUUID(l.RAIDs[0].UUID) + " --name=md0 --homehost=any /dev/sda2 /dev/sdb2",
		"lvm pvcreate -ff -y --zero y --dataalignment 1m --metadatasize 16777216b --metadatacopies 1 /dev/sda3",
		"lvm pvcreate -ff -y --zero y --dataalignment 1m /dev/sdb3",
		"lvm vgcreate -y --physicalextentsize 4194304b os /dev/sda3 /dev/sdb3",
		"lvm lvcreate -y --wipesignatures y --zero y -n root -l 1024 os",
		"lvm lvcreate -y --wipesignatures y --zero y -n swap -l " + itoa(int(l.VGs[0].LVs[1].Extents)) + " os",
		"mke2fs -F -q -t ext4 -U " + l.RAIDs[0].FS.UUID + " -L boot /dev/md/md0",
		"mkfs.xfs -f -q -m uuid=" + l.VGs[0].LVs[0].FS.UUID + " -L os /dev/os/root", // a root's default label is its image
		"mkswap -f -U " + l.VGs[0].LVs[1].FS.UUID + " -L swap /dev/os/swap",
	}
	if got := fake.Commands(); !slices.Equal(got, want) {
		t.Errorf("commands:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	// The pv with lvm_meta_size: one 16 MiB area, data at 17 MiB, nothing kept at the end.
	pv := l.VGs[0].PVs[0]
	if pv.DataStart != 17<<20 || pv.MetadataCopies != 1 || pv.Extents != (pv.SizeBytes-17<<20)/ExtentSize {
		t.Errorf("pv = %+v", pv)
	}
}

func TestExecuteStopsAtTheFailingStep(t *testing.T) {
	l := mustPlan(t, lvmRaidDoc, nil, "apply")
	actions, err := CleanActions(l, sdDevs)
	if err != nil {
		t.Fatal(err)
	}
	progs := programs(actions)
	fake := &run.Fake{Handler: func(c run.Call) (run.Result, error) {
		if c.Argv[0] == "lvm" && c.Argv[1] == "vgcreate" {
			return run.Result{}, run.Fail(c.Argv, 5, "  Physical volume /dev/sdb3 not found")
		}
		return run.Result{}, nil
	}}
	var progress strings.Builder
	err = Execute(context.Background(), Env{Run: fake}, progs, Hooks{Step: func(n, of int, a Action) { fmt.Fprintf(&progress, "[%d/%d] %s\n", n, of, a) }})
	var rerr *run.Error
	if !errors.As(err, &rerr) || rerr.ExitCode != 5 || !strings.Contains(err.Error(), "step 4/9 (create volume group os)") || !strings.Contains(err.Error(), "/dev/sdb3 not found") {
		t.Fatalf("err = %v", err)
	}
	if n := len(fake.Calls()); n != 4 {
		t.Errorf("%d programs ran, want 4 (nothing after the failure)", n)
	}
	if !strings.Contains(progress.String(), "[4/9] run: lvm vgcreate") {
		t.Errorf("progress:\n%s", progress.String())
	}
}

func TestSingleMemberRAIDIsForced(t *testing.T) {
	doc := `{"images": [{"name": "os", "url": "u", "target": "/"}], "boot_mode": "bios",
	 "partitions": [{"type": "disk", "id": {"type": "name", "value": "sda"}, "size": "4 GiB", "volumes": [
	   {"type": "raid", "mount": "/boot", "file_system": "ext2", "size": "200"},
	   {"type": "partition", "mount": "/", "file_system": "ext4", "size": "remaining"}]}]}`
	l := mustPlan(t, doc, nil, "one")
	got := raidActions(l, Devices{"sda": "/dev/sda"})
	if len(got) != 1 || !slices.Contains(got[0].Argv, "--force") || !slices.Contains(got[0].Argv, "--raid-devices=1") {
		t.Errorf("raid actions = %v", got)
	}
}

func TestMkfsArgv(t *testing.T) {
	for _, tc := range []struct {
		fs   Filesystem
		want string
	}{
		{Filesystem{Type: "ext2", UUID: "u1", Label: "boot"}, "mke2fs -F -q -t ext2 -U u1 -L boot /dev/x"},
		{Filesystem{Type: "ext3", UUID: "u1"}, "mke2fs -F -q -t ext3 -U u1 /dev/x"},
		{Filesystem{Type: "ext4", UUID: "u1", Label: "root", MkfsOptions: []string{"-E", "lazy_itable_init=1"}}, "mke2fs -F -q -t ext4 -U u1 -L root -E lazy_itable_init=1 /dev/x"},
		{Filesystem{Type: "xfs", UUID: "u2", Label: "data", MkfsOptions: []string{"-i", "size=512"}}, "mkfs.xfs -f -q -m uuid=u2 -L data -i size=512 /dev/x"},
		{Filesystem{Type: "vfat", UUID: "ABCD-1234", Label: "ESP", MkfsOptions: []string{"-F", "32"}}, "mkfs.vfat -i ABCD1234 -n ESP -F 32 /dev/x"},
		{Filesystem{Type: "vfat", UUID: "ABCD-1234"}, "mkfs.vfat -i ABCD1234 /dev/x"},
		{Filesystem{Type: "swap", UUID: "u3", Label: "swap"}, "mkswap -f -U u3 -L swap /dev/x"},
	} {
		if got := run.String(mkfsAction(&tc.fs, "/dev/x").Argv); got != tc.want {
			t.Errorf("%s: %s\n want %s", tc.fs.Type, got, tc.want)
		}
	}
}

func TestCleanActionsNeedEveryDevice(t *testing.T) {
	l := mustPlan(t, lvmRaidDoc, nil, "apply")
	if _, err := CleanActions(l, Devices{"sda": "/dev/sda"}); err == nil || !strings.Contains(err.Error(), "sdb") {
		t.Errorf("err = %v", err)
	}
}

func existingOf(d *DiskLayout) *ExistingTable {
	t := &ExistingTable{SectorSize: d.SectorSize, GUID: "EXISTING-DISK"}
	for _, p := range d.Partitions {
		t.Partitions = append(t.Partitions, ExistingPartition{Number: p.Number, Start: p.Start, End: p.End, Type: p.Type, GUID: "OLD-" + p.Name, Name: p.Name})
	}
	return t
}

func TestCompareTable(t *testing.T) {
	l := mustPlan(t, gptDoc, map[string]Disk{"vda": {SizeBytes: 20 << 30, SectorSize: 512}}, "cmp")
	d := l.Disks[0]
	last := len(d.Partitions) - 1
	for _, tc := range []struct {
		name   string
		change func(*ExistingTable)
		want   string
	}{
		{"identical", func(*ExistingTable) {}, ""},
		{"within 1 MiB", func(e *ExistingTable) { e.Partitions[last].End -= 2047 }, ""},
		{"moved more than 1 MiB", func(e *ExistingTable) { e.Partitions[last].Start += 4096 }, "partition 7 is at sectors"},
		{"missing", func(e *ExistingTable) { e.Partitions = e.Partitions[:last] }, "partition 7 (swap) is missing"},
		{"other type", func(e *ExistingTable) { e.Partitions[last].Type = TypeLinuxFS }, "partition 7 has type 0FC63DAF"},
		{"extra", func(e *ExistingTable) {
			e.Partitions = append(e.Partitions, ExistingPartition{Number: 9, Start: 1, End: 2, Type: TypeLinuxFS})
		}, "has partition 9, which the plan does not have"},
		{"4Kn table", func(e *ExistingTable) { e.SectorSize = 4096 }, "4096-byte sectors"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := existingOf(d)
			tc.change(e)
			err := CompareTable(d, e)
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("unexpected mismatch: %v", err)
			case tc.want != "" && (!errors.Is(err, ErrMismatch) || !strings.Contains(err.Error(), tc.want)):
				t.Errorf("err = %v, want a mismatch containing %q", err, tc.want)
			}
		})
	}
	if err := CompareTable(d, nil); !errors.Is(err, ErrMismatch) || !strings.Contains(err.Error(), "no GPT") {
		t.Errorf("no table: %v", err)
	}
}

func TestCompareLVs(t *testing.T) {
	l := mustPlan(t, lvmRaidDoc, nil, "cmp")
	exact := map[string]uint64{}
	for _, lv := range l.VGs[0].LVs {
		exact["os/"+lv.Name] = lv.SizeBytes
	}
	if err := CompareLVs(l, exact); err != nil {
		t.Errorf("exact sizes: %v", err)
	}
	off := map[string]uint64{"os/root": exact["os/root"] + 8<<20, "os/swap": exact["os/swap"]}
	if err := CompareLVs(l, off); !errors.Is(err, ErrMismatch) || !strings.Contains(err.Error(), "os/root is 4.01 GiB") {
		t.Errorf("8 MiB off: %v", err)
	}
	if err := CompareLVs(l, map[string]uint64{"os/root": exact["os/root"]}); !errors.Is(err, ErrMismatch) || !strings.Contains(err.Error(), "os/swap is missing") {
		t.Errorf("missing lv: %v", err)
	}
}

func TestAdoptKeepsIdentities(t *testing.T) {
	doc := strings.Replace(gptDoc, `"size": "remaining", "images": ["b"]}`, `"size": "remaining", "images": ["b"], "keep_data": true}`, 1)
	doc = strings.Replace(doc, `"partitions": [`, `"partitions_policy": "verify", "partitions": [`, 1)
	l := mustPlan(t, doc, map[string]Disk{"vda": {SizeBytes: 20 << 30, SectorSize: 512}}, "adopt")
	d := l.Disks[0]
	var kept *Filesystem
	for _, fs := range l.Filesystems() {
		if fs.KeepData {
			kept = fs
		}
	}
	if kept == nil || !l.AnyKeepData() {
		t.Fatal("no kept filesystem in the plan")
	}
	tables := map[string]*ExistingTable{"vda": existingOf(d)}
	if err := l.Adopt(tables, map[*Filesystem]FSInfo{kept: {Type: "ext4", UUID: "real"}}); !errors.Is(err, ErrMismatch) || !strings.Contains(err.Error(), "holds ext4, the plan says xfs") {
		t.Errorf("wrong type: %v", err)
	}
	if err := l.Adopt(tables, nil); !errors.Is(err, ErrMismatch) || !strings.Contains(err.Error(), "holds no filesystem") {
		t.Errorf("no filesystem: %v", err)
	}
	if err := l.Adopt(tables, map[*Filesystem]FSInfo{kept: {Type: "xfs", UUID: "1111-real", Label: "old"}}); err != nil {
		t.Fatal(err)
	}
	if d.GUID != "EXISTING-DISK" || !strings.HasPrefix(d.Partitions[0].GUID, "OLD-") {
		t.Errorf("GUIDs not adopted: %s %s", d.GUID, d.Partitions[0].GUID)
	}
	var b *Image
	for _, im := range l.Images {
		if im.Name == "b" {
			b = im
		}
	}
	if b.RootUUID != "1111-real" || !regexp.MustCompile(`(?m)^UUID=1111-real\s+/\s`).MatchString(b.Fstab) || kept.Label != "old" {
		t.Errorf("image b: root %s, fstab:\n%s", b.RootUUID, b.Fstab)
	}
	remake := remakeActions(l, Devices{"vda": "/dev/vda"})
	for _, a := range remake {
		if strings.Contains(a.String(), kept.UUID) || slices.Contains(a.Argv, "/dev/vda6") {
			t.Errorf("a kept filesystem is re-made: %s", a)
		}
	}
	if len(remake) != len(l.Filesystems())-1 {
		t.Errorf("%d re-made filesystems, want all but the kept one", len(remake))
	}
}
