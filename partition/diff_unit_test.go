package partition

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"
)

func TestCompareVersions(t *testing.T) {
	for _, c := range []struct {
		a, b string
		want int
	}{
		{"Debian 12.4", "Debian 12.10", -1},
		{"Debian 12.10", "Debian 12.4", 1},
		{"Debian 12.4", "debian 12.4", 0},
		{"v09", "v9", 0},
		{"Debian 12", "Debian 12.1", -1},
		{"CentOS 7", "CentOS 6.10", 1},
		{"ubuntu-24.04.tar.zst", "ubuntu-22.04.tar.zst", 1},
		{"Debian 12", "Ubuntu 24.04", 0},
		{"x86_64-debian-12", "x86_64-debian-11", 1},
		{"img-99999999999999999999999.1", "img-100000000000000000000000.0", -1},
		{"", "", 0},
	} {
		if got := CompareVersions(c.a, c.b); got != c.want {
			t.Errorf("CompareVersions(%q, %q) = %d, want %d", c.a, c.b, got, c.want)
		}
	}
}

func TestColumns(t *testing.T) {
	for _, sizes := range [][]uint64{
		{1, 1, 1},
		{2048, 204800, 40960, 9766912, 9766912, 2097152, 7000000},
		{1, 1 << 40},
		{5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5},
	} {
		cols := columns(sizes, PictureWidth)
		sum := 0
		for i, c := range cols {
			if c < 1 {
				t.Errorf("sizes %v: segment %d has %d columns", sizes, i, c)
			}
			sum += c
		}
		if sum != PictureWidth && len(sizes) <= PictureWidth {
			t.Errorf("sizes %v: %d columns, want %d: %v", sizes, sum, PictureWidth, cols)
		}
	}
	// Proportions: a partition 3 times another gets about 3 times the columns.
	if cols := columns([]uint64{1, 3}, 64); cols[0] != 16 || cols[1] != 48 {
		t.Errorf("columns(1, 3) = %v, want [16 48]", cols)
	}
}

// TestDiffVerifyKeepsTheLayout: under verify, a volume added in free space is refused,
// naming it.
func TestDiffVerifyKeepsTheLayout(t *testing.T) {
	mb := editDoc(t, exampleDoc(t, "multiboot-two-images"), func(m map[string]any) { m["partitions_policy"] = "verify" })
	next := editDoc(t, mb, func(m map[string]any) {
		setVolumes(m, 0, append(diskVolumes(m, 0), map[string]any{"type": "partition", "mount": "/srv", "file_system": "xfs", "size": "1 GiB", "images": stringList("centos")}))
	})
	b, err := diffDocs(t, mb, next)
	refusalsMention(t, err, "vda#7", "would be created", "verify")
	if b == nil || len(b.Refusals) != 1 {
		t.Fatalf("break-down %+v", b)
	}
	if _, err := diffDocs(t, mb, mb); err != nil {
		t.Errorf("the same layout under verify: %v", err)
	}
}

// TestDiffDrift: what the record has and the disks lack is refused; a disk not probed
// is an error.
func TestDiffDrift(t *testing.T) {
	doc := exampleDoc(t, "lvm")
	r := deployedRecord(t, doc, "s")
	next := mustPlan(t, doc, nil, "s")
	cur := currentOf(r)
	delete(cur.LVs, "os/data")
	tbl := cur.Disks["vda"].Table
	tbl.Partitions = tbl.Partitions[:len(tbl.Partitions)-1] // the pv
	_, err := Diff(r, cur, next, nil)
	refusalsMention(t, err, "os/data", "the disks have no such logical volume")
	refusalsMention(t, err, "vda#5", "the disk has no partition 5")

	delete(cur.Disks, "vda")
	if _, err := Diff(r, cur, next, nil); err == nil || errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "disk vda") {
		t.Errorf("unprobed disk: %v", err)
	}
}

// TestDiffLostPV: when the pv partition is re-created, every logical volume on it is
// re-created too, and an unknown partition on the disk is destroyed.
func TestDiffLostPV(t *testing.T) {
	doc := exampleDoc(t, "lvm")
	next := editDoc(t, doc, func(m map[string]any) { obj(diskVolumes(m, 1)[0])["size"] = "1 GiB" }) // /boot grows, the pv moves
	r := deployedRecord(t, doc, "s")
	cur := currentOf(r)
	tbl := cur.Disks["vda"].Table
	last := tbl.Partitions[len(tbl.Partitions)-1]
	tbl.Partitions[len(tbl.Partitions)-1].End -= 8 * secPerMiB // room for a stranger at the end
	tbl.Partitions = append(tbl.Partitions, ExistingPartition{Number: 9, Start: last.End - 4*secPerMiB, End: last.End, Type: TypeLinuxFS})
	b, err := Diff(r, cur, mustPlan(t, next, nil, "s"), nil)
	if err == nil {
		t.Fatal("the boot partition growing into the pv's space is not refused")
	}
	refusalsMention(t, err, "vda#4", "grows from 512 MiB to 1 GiB")
	if v := findVolume(t, b, "vda#5", ActionRecreated); !strings.Contains(v.Reason, "moved") {
		t.Errorf("pv: %+v", v)
	}
	for _, lv := range []string{"os/alpha-root", "os/beta-root", "os/data", "os/scratch"} {
		if v := findVolume(t, b, lv, ActionRecreated); v.Reason != "its physical volume vda#5 is re-created" {
			t.Errorf("%s: %+v", lv, v)
		}
	}
	if v := findVolume(t, b, "vda#9", ActionDestroyed); v.Role != "unknown" || !v.DataLost {
		t.Errorf("stranger: %+v", v)
	}
}

// TestDiffDefaultAndReboot: the default follows the spec's boot image when the spec
// changes it; a switch-default made since the deploy is kept otherwise; without a
// booted image the default is taken as running.
func TestDiffDefaultAndReboot(t *testing.T) {
	mb := exampleDoc(t, "multiboot-two-images")
	r := deployedRecord(t, mb, "s")
	upd := editDoc(t, mb, func(m map[string]any) {
		im := obj(m, "images", 1)
		im["url"], im["checksum"] = "http://images.example/ubuntu-24.10.tar.zst", "sha256:"+strings.Repeat("ef", 32)
	})

	cur := currentOf(r)
	cur.Default, cur.Booted = "ubuntu", "" // switched since the deploy; offline
	b, err := Diff(r, cur, mustPlan(t, upd, nil, "s"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if bc := b.Bootloader; bc.DefaultBefore != "ubuntu" || bc.DefaultAfter != "ubuntu" {
		t.Errorf("default %s -> %s, want ubuntu kept", bc.DefaultBefore, bc.DefaultAfter)
	}
	if im := findImage(t, b, "ubuntu"); !im.NeedsReboot || im.Action != ImageUpdated {
		t.Errorf("ubuntu: %+v", im)
	}

	swapped := editDoc(t, mb, func(m map[string]any) {
		delete(obj(m, "images", 0), "boot")
		obj(m, "images", 1)["boot"] = true
	})
	b, err = Diff(r, currentOf(r), mustPlan(t, swapped, nil, "s"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if bc := b.Bootloader; bc.DefaultBefore != "centos" || bc.DefaultAfter != "ubuntu" || !strings.Contains(b.Summary, "default centos -> ubuntu") {
		t.Errorf("default %s -> %s; summary %q", bc.DefaultBefore, bc.DefaultAfter, b.Summary)
	}
}

// TestDiffFailedReload: an image whose boot entry says its reload failed is never
// unchanged; a digest the caller resolved counts over the spec's checksum.
func TestDiffFailedReload(t *testing.T) {
	mb := exampleDoc(t, "multiboot-two-images")
	r := deployedRecord(t, mb, "s")
	cur := currentOf(r)
	cur.Entries[0].State = "failed"
	b, err := Diff(r, cur, mustPlan(t, mb, nil, "s"), map[string]string{"ubuntu": "sha256:" + strings.Repeat("0", 64)})
	if err != nil {
		t.Fatal(err)
	}
	if im := findImage(t, b, "centos"); im.Action != ImageUpdated || !strings.Contains(im.Note, "failed") || !im.NeedsReboot {
		t.Errorf("centos: %+v", im)
	}
	if im := findImage(t, b, "ubuntu"); im.Action != ImageUpdated || im.To.Digest != "sha256:"+strings.Repeat("0", 64) {
		t.Errorf("ubuntu: %+v", im)
	}
}

// TestDiffNilInputs: missing inputs are errors, not refusals.
func TestDiffNilInputs(t *testing.T) {
	r := deployedRecord(t, exampleDoc(t, "lvm"), "s")
	for name, f := range map[string]func() error{
		"record": func() error { _, err := Diff(nil, currentOf(r), r.Layout, nil); return err },
		"plan":   func() error { _, err := Diff(r, currentOf(r), nil, nil); return err },
		"probe":  func() error { _, err := Diff(r, nil, r.Layout, nil); return err },
	} {
		if err := f(); err == nil || errors.Is(err, ErrRefused) {
			t.Errorf("no %s: %v", name, err)
		}
	}
}

// TestDiffRAID: an md array whose member moves is re-created; one whose members grow in
// place is grown; one whose members stay is kept.
func TestDiffRAID(t *testing.T) {
	doc := exampleDoc(t, "raid1")
	next := editDoc(t, doc, func(m map[string]any) {
		for i := range 2 {
			obj(diskVolumes(m, i)[0])["size"] = "9 GiB"
		}
	})
	b, err := diffDocs(t, doc, doc)
	if err != nil || !b.NothingToDo {
		t.Fatalf("same spec: nothing to do %v, %v", b.NothingToDo, err)
	}
	findVolume(t, b, "md/md0", ActionKept)
	b, err = diffDocs(t, doc, next)
	if err == nil {
		t.Fatal("md0's members growing into md1's are not refused")
	}
	var md1 VolumeChange
	for _, v := range b.Volumes {
		if v.Kind == KindRAID && v.Mount == "/var" {
			md1 = v
		}
	}
	if md1.Action != ActionRecreated || !strings.Contains(md1.Reason, "its member sda#") || !md1.DataLost {
		t.Errorf("/var array: %+v", md1)
	}
	if v := findVolume(t, b, "md/md0", ActionGrown); v.FromBytes != v.ToBytes-1<<30 {
		t.Errorf("md0: %+v", v)
	}
}

// TestDiffEveryExampleAgainstItself: every example spec applied again, planned with its
// own seed or another, is nothing to do.
func TestDiffEveryExampleAgainstItself(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("..", "examples", "*.json"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no examples: %v", err)
	}
	for _, f := range files {
		name := strings.TrimSuffix(filepath.Base(f), ".json")
		t.Run(name, func(t *testing.T) {
			doc := exampleDoc(t, name)
			r := deployedRecord(t, doc, "seed-a")
			for _, seed := range []string{"seed-a", "seed-b"} {
				b, err := Diff(r, currentOf(r), mustPlan(t, doc, nil, seed), nil)
				if err != nil || !b.NothingToDo || b.Unforced() != nil {
					t.Errorf("seed %s: nothing to do %v, %v; summary %q", seed, b != nil && b.NothingToDo, err, b.Summary)
				}
			}
		})
	}
}
