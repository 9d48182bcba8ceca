package partition

import (
	"errors"
	"strings"
	"testing"
)

// diffCase is one golden break-down: old is deployed, new is planned against it.
type diffCase struct {
	name     string
	old, new string
	refused  bool
	// check looks at the break-down beyond the golden files.
	check func(t *testing.T, b *Breakdown, err error)
}

// diffCases builds the golden cases on the example specs.
func diffCases(t *testing.T) []diffCase {
	mb := exampleDoc(t, "multiboot-two-images")
	three := editDoc(t, mb, withThirdImage)
	return []diffCase{
		{name: "no-op", old: mb, new: mb, check: checkNoOp},
		{name: "image-changed", old: mb, new: editDoc(t, mb, func(m map[string]any) {
			im := obj(m, "images", 0)
			im["url"], im["image_name"] = "http://images.example/centos-7.9.tar.gz", "CentOS 7.9"
		}), check: checkImageChanged},
		{name: "image-added", old: mb, new: three, check: checkImageAdded},
		{name: "image-removed", old: three, new: mb, check: checkImageRemoved},
		{name: "volume-grown", old: mb, new: editDoc(t, mb, func(m map[string]any) {
			obj(diskVolumes(m, 0)[2])["size"] = "2 GiB"
		}), check: checkVolumeGrown},
		{name: "volume-added", old: mb, new: editDoc(t, mb, func(m map[string]any) {
			setVolumes(m, 0, append(diskVolumes(m, 0), map[string]any{"type": "partition", "mount": "/srv", "file_system": "xfs", "size": "1 GiB", "images": stringList("centos")}))
		}), check: checkVolumeAdded},
		keepDataCase(t, mb),
		refusedCase(t, mb),
		{name: "downgrade", old: mb, new: editDoc(t, mb, func(m map[string]any) {
			im := obj(m, "images", 0)
			im["url"], im["image_name"] = "http://images.example/centos-6.10.tar.gz", "CentOS 6.10"
		}), check: checkDowngrade},
		{name: "no-op-image", old: mb, new: editDoc(t, mb, func(m map[string]any) {
			obj(m, "images", 1)["url"] = "http://mirror.example/ubuntu-24.04.tar.zst"
		}), check: checkNoOpImage},
		lvGrownCase(t),
	}
}

// TestDiffGolden checks each kind of change against its golden text and JSON.
func TestDiffGolden(t *testing.T) {
	for _, c := range diffCases(t) {
		t.Run(c.name, func(t *testing.T) {
			b, err := diffDocs(t, c.old, c.new)
			if c.refused != (err != nil) {
				t.Fatalf("refused %v, want %v: %v", err != nil, c.refused, err)
			}
			if err != nil && !errors.Is(err, ErrRefused) {
				t.Fatalf("error %v is not a refusal", err)
			}
			if b == nil {
				t.Fatal("no break-down")
			}
			checkBreakdownGolden(t, c.name, b)
			if c.check != nil {
				c.check(t, b, err)
			}
		})
	}
}

// keepDataCase: a keep_data /srv/data at the end of the disk under nailgun_legacy stays
// kept while ubuntu's image changes and a volume is added after it.
func keepDataCase(t *testing.T, mb string) diffCase {
	withData := func(m map[string]any) {
		delete(m, "partitions_policy")
		m["partitions_policy"] = "nailgun_legacy"
		setVolumes(m, 0, append(diskVolumes(m, 0), map[string]any{"type": "partition", "mount": "/srv/data", "file_system": "ext4",
			"size": "1 GiB", "images": stringList("centos", "ubuntu"), "keep_data": true}))
	}
	old := editDoc(t, mb, withData)
	next := editDoc(t, old, func(m map[string]any) {
		obj(m, "images", 1)["checksum"] = "sha256:" + strings.Repeat("12", 32)
		setVolumes(m, 0, append(diskVolumes(m, 0), map[string]any{"type": "partition", "mount": "/var/log", "file_system": "ext4",
			"size": "512 MiB", "images": stringList("ubuntu")}))
	})
	return diffCase{name: "keep-data-kept", old: old, new: next, check: func(t *testing.T, b *Breakdown, err error) {
		v := findVolume(t, b, "vda#7", ActionKept)
		if !v.KeepData || v.DataLost || v.Mount != "/srv/data" {
			t.Errorf("keep_data volume: %+v", v)
		}
		findVolume(t, b, "vda#8", ActionCreated)
		if im := findImage(t, b, "ubuntu"); im.Action != ImageUpdated || im.NeedsReboot {
			t.Errorf("ubuntu: %+v", im)
		}
	}}
}

// refusedCase: centos's root grows into ubuntu's, whose keep_data root would move.
func refusedCase(t *testing.T, mb string) diffCase {
	keep := func(m map[string]any) {
		m["partitions_policy"] = "nailgun_legacy"
		obj(diskVolumes(m, 0)[1])["keep_data"] = true
	}
	old := editDoc(t, mb, keep)
	next := editDoc(t, old, func(m map[string]any) { obj(diskVolumes(m, 0)[0])["size"] = "6000 MB" })
	return diffCase{name: "refused-destructive", old: old, new: next, refused: true, check: func(t *testing.T, b *Breakdown, err error) {
		refusalsMention(t, err, "vda#4", "grows from 4.66 GiB to 5.59 GiB", "partition 5 (4.66 GiB) holds")
		refusalsMention(t, err, "vda#5", "keep_data", "moved from sector")
		refusalsMention(t, err, "vda#6", "nailgun_legacy", "re-created")
		if !strings.HasPrefix(b.Summary, "REFUSED: 3 problems") {
			t.Errorf("summary %q", b.Summary)
		}
	}}
}

// lvGrownCase: on the lvm example with a fixed-size scratch volume, beta-root grows into
// the group's free space and a logs volume is added.
func lvGrownCase(t *testing.T) diffCase {
	old := editDoc(t, exampleDoc(t, "lvm"), func(m map[string]any) {
		vols := diskVolumes(m, 0)
		obj(vols[2])["size"], obj(vols[3])["size"] = "6 GiB", "2 GiB"
	})
	next := editDoc(t, old, func(m map[string]any) {
		obj(diskVolumes(m, 0)[1])["size"] = "5 GiB"
		setVolumes(m, 0, append(diskVolumes(m, 0), map[string]any{"type": "lv", "name": "logs", "mount": "/var/log", "file_system": "ext4", "size": "1 GiB", "images": stringList("alpha")}))
	})
	return diffCase{name: "lv-grown", old: old, new: next, check: func(t *testing.T, b *Breakdown, err error) {
		v := findVolume(t, b, "os/beta-root", ActionGrown)
		if v.FromBytes != 4<<30 || v.ToBytes != 5<<30 {
			t.Errorf("beta-root %d -> %d", v.FromBytes, v.ToBytes)
		}
		findVolume(t, b, "os/logs", ActionCreated)
		findVolume(t, b, "os/data", ActionKept)
	}}
}

// checkNoOp: the same spec is nothing to do, also when planned with another seed (no
// volume is matched by UUID), and forces nothing.
func checkNoOp(t *testing.T, b *Breakdown, err error) {
	if !b.NothingToDo || !strings.HasPrefix(b.Summary, "nothing to do") || b.Unforced() != nil {
		t.Errorf("nothing to do %v, summary %q, unforced %v", b.NothingToDo, b.Summary, b.Unforced())
	}
	mb := exampleDoc(t, "multiboot-two-images")
	r := deployedRecord(t, mb, "seed-a")
	other, err := Diff(r, currentOf(r), mustPlan(t, mb, nil, "another seed"), nil)
	if err != nil || !other.NothingToDo {
		t.Errorf("with another seed: nothing to do %v, %v", other.NothingToDo, err)
	}
}

// checkImageChanged: centos, the booted default, is updated and needs a reboot.
func checkImageChanged(t *testing.T, b *Breakdown, err error) {
	im := findImage(t, b, "centos")
	if im.Action != ImageUpdated || !im.NeedsReboot || im.Downgrade || im.From.ImageName != "CentOS 7" || im.To.ImageName != "CentOS 7.9" {
		t.Errorf("centos: %+v", im)
	}
	if u := findImage(t, b, "ubuntu"); u.Action != ImageUnchanged || u.NoOp {
		t.Errorf("ubuntu: %+v", u)
	}
	if got := b.Bootloader.Changed; len(got) != 1 || got[0] != "centos" {
		t.Errorf("entries changed %v", got)
	}
	if b.Unforced() != nil {
		t.Errorf("unforced: %v", b.Unforced())
	}
}

// checkImageAdded: debian's root is created in free space, the shared swap is kept.
func checkImageAdded(t *testing.T, b *Breakdown, err error) {
	if im := findImage(t, b, "debian"); im.Action != ImageAdded || im.From != nil {
		t.Errorf("debian: %+v", im)
	}
	findVolume(t, b, "vda#7", ActionCreated)
	if v := findVolume(t, b, "vda#6", ActionKept); len(v.Images) != 3 {
		t.Errorf("swap images %v", v.Images)
	}
	if got := b.Bootloader.Added; len(got) != 1 || got[0] != "debian" {
		t.Errorf("entries added %v", got)
	}
}

// checkImageRemoved: debian's entry leaves the menu; its root is left alone (its data
// kept, outside the spec), and destroyed only with RemoveData.
func checkImageRemoved(t *testing.T, b *Breakdown, err error) {
	if im := findImage(t, b, "debian"); im.Action != ImageRemoved || im.NeedsReboot {
		t.Errorf("debian: %+v", im)
	}
	if v := findVolume(t, b, "vda#7", ActionKept); v.DataLost || !strings.Contains(v.Reason, "left alone: its image(s) debian left the spec") {
		t.Errorf("vda#7: %+v", v)
	}
	if got := b.Bootloader.Removed; len(got) != 1 || got[0] != "debian" {
		t.Errorf("entries removed %v", got)
	}
	if strings.Contains(b.Summary, "DATA LOST") {
		t.Errorf("summary %q", b.Summary)
	}
}

// TestDiffRemoveData: with RemoveData the root of the removed image is destroyed, saying
// its data is lost.
func TestDiffRemoveData(t *testing.T) {
	mb := exampleDoc(t, "multiboot-two-images")
	r := deployedRecord(t, editDoc(t, mb, withThirdImage), "seed-a")
	next := mustPlan(t, mb, nil, r.Layout.Seed)
	b, err := DiffWith(r, currentOf(r), next, nil, DiffOptions{RemoveData: true})
	if err != nil {
		t.Fatal(err)
	}
	if v := findVolume(t, b, "vda#7", ActionDestroyed); !v.DataLost || v.Reason != "not in the spec" {
		t.Errorf("vda#7: %+v", v)
	}
	if !strings.Contains(b.Summary, "DATA LOST on 1 volume") {
		t.Errorf("summary %q", b.Summary)
	}
}

// checkVolumeGrown: the swap at the end grows in place from 1 GiB to 2 GiB.
func checkVolumeGrown(t *testing.T, b *Breakdown, err error) {
	v := findVolume(t, b, "vda#6", ActionGrown)
	if v.FromBytes != 1<<30 || v.ToBytes != 2<<30 || v.FromStart != v.ToStart {
		t.Errorf("swap: %+v", v)
	}
}

// checkVolumeAdded: /srv is created after the swap.
func checkVolumeAdded(t *testing.T, b *Breakdown, err error) {
	if v := findVolume(t, b, "vda#7", ActionCreated); v.FSType != "xfs" || v.Mount != "/srv" || v.ToBytes != 1<<30 {
		t.Errorf("/srv: %+v", v)
	}
	if !strings.Contains(b.Disks[0].After, "7+") {
		t.Errorf("after bar %q does not mark partition 7 created", b.Disks[0].After)
	}
}

// checkDowngrade: CentOS 7 -> CentOS 6.10 is a downgrade, refused unless forced.
func checkDowngrade(t *testing.T, b *Breakdown, err error) {
	if im := findImage(t, b, "centos"); !im.Downgrade || im.Action != ImageUpdated {
		t.Errorf("centos: %+v", im)
	}
	var fe *ForceError
	if e := b.Unforced(); !errors.As(e, &fe) || !errors.Is(e, ErrNeedsForce) || len(fe.Downgrades) != 1 || !strings.Contains(e.Error(), "centos (CentOS 7 -> CentOS 6.10)") {
		t.Errorf("unforced: %v", e)
	}
}

// checkNoOpImage: ubuntu from a mirror with the same digest is a no-op, refused unless
// forced.
func checkNoOpImage(t *testing.T, b *Breakdown, err error) {
	if im := findImage(t, b, "ubuntu"); !im.NoOp || im.Action != ImageUnchanged {
		t.Errorf("ubuntu: %+v", im)
	}
	var fe *ForceError
	if e := b.Unforced(); !errors.As(e, &fe) || len(fe.NoOps) != 1 || fe.NoOps[0] != "ubuntu" {
		t.Errorf("unforced: %v", e)
	}
	if b.NothingToDo {
		t.Error("a no-op image is not nothing to do")
	}
}
