package partition

import (
	"errors"
	"strings"
	"testing"
)

// updateCase deploys oldDoc with one seed, plans newDoc with another (so that every
// identity the new plan makes differs from the deployed one) and returns the record, the
// new plan, the break-down and the merged layout.
func updateCase(t *testing.T, oldDoc, newDoc string) (*Record, *Layout, *Breakdown, *Layout) {
	t.Helper()
	r := deployedRecord(t, oldDoc, "seed-a")
	next := mustPlan(t, newDoc, nil, "seed-b")
	b, err := Diff(r, currentOf(r), next, nil)
	if err != nil {
		t.Fatalf("Diff: %v", err)
	}
	m, err := UpdateLayout(r.Layout, next, b, false)
	if err != nil {
		t.Fatalf("UpdateLayout: %v", err)
	}
	return r, next, b, m
}

// stepsText renders actions one per line, as --dry-run prints them.
func stepsText(actions []Action) string {
	var l []string
	for _, a := range actions {
		l = append(l, a.String())
	}
	return strings.Join(l, "\n")
}

// TestUpdateLayoutKeepsIdentities: a volume added to the multiboot example keeps every
// deployed partition's GUID and filesystem UUID (so the images' fstabs and roots are
// unchanged) whatever seed the new plan had, and the added one has the new plan's.
func TestUpdateLayoutKeepsIdentities(t *testing.T) {
	mb := exampleDoc(t, "multiboot-two-images")
	added := editDoc(t, mb, func(m map[string]any) {
		setVolumes(m, 0, append(diskVolumes(m, 0), map[string]any{"type": "partition", "mount": "/srv", "file_system": "xfs", "size": "1 GiB", "images": stringList("centos")}))
	})
	r, next, _, m := updateCase(t, mb, added)
	od, md, nd := r.Layout.Disks[0], m.Disks[0], next.Disks[0]
	if md.GUID != od.GUID || m.Seed != r.Layout.Seed {
		t.Errorf("disk GUID %s, seed %s; want the deployed %s, %s", md.GUID, m.Seed, od.GUID, r.Layout.Seed)
	}
	if len(md.Partitions) != len(od.Partitions)+1 {
		t.Fatalf("%d partitions, want %d", len(md.Partitions), len(od.Partitions)+1)
	}
	for i, op := range od.Partitions {
		p := md.Partitions[i]
		if p.GUID != op.GUID || p.Start != op.Start || p.End != op.End || (op.FS != nil) != (p.FS != nil) || op.FS != nil && (p.FS.UUID != op.FS.UUID || p.FS.Label != op.FS.Label) {
			t.Errorf("partition %d: %+v, want the deployed %+v", op.Number, p, op)
		}
	}
	last, nlast := md.Partitions[len(md.Partitions)-1], nd.Partitions[len(nd.Partitions)-1]
	if last.GUID != nlast.GUID || last.FS.UUID != nlast.FS.UUID || last.FS.Mount != "/srv" {
		t.Errorf("added partition %+v, want the new plan's identities", last)
	}
	if m.Multiboot == nil || m.Multiboot.UUID != r.Layout.Multiboot.UUID || m.Multiboot != md.Partitions[1].FS {
		t.Errorf("multiboot %+v, want the deployed one, shared with its partition", m.Multiboot)
	}
	for _, im := range m.Images {
		old := r.Image(im.Name)
		if im.RootUUID != old.RootUUID {
			t.Errorf("image %s: root %s, want the deployed %s", im.Name, im.RootUUID, old.RootUUID)
		}
	}
	mr := &Record{Layout: m}
	if n := len(mr.Image("centos").Mounts); n != len(r.Image("centos").Mounts)+1 {
		t.Errorf("centos mounts %d, want one more than the deployed %d", n, len(r.Image("centos").Mounts))
	}
}

// TestUpdateActionsAddAndGrow: the steps of an added partition (the GPT rewritten, the
// kernel told, the new partition wiped and formatted with its planned UUID), of a grown
// swap partition (made again with its deployed UUID), and of logical volumes grown and
// added; kept volumes get no step, and the same spec gives no step at all.
func TestUpdateActionsAddAndGrow(t *testing.T) {
	mb := exampleDoc(t, "multiboot-two-images")
	devs := Devices{"vda": "/dev/loop7"}
	grown := editDoc(t, mb, func(m map[string]any) {
		obj(diskVolumes(m, 0)[2])["size"] = "2 GiB"
		setVolumes(m, 0, append(diskVolumes(m, 0), map[string]any{"type": "partition", "mount": "/srv", "file_system": "xfs", "size": "1 GiB", "images": stringList("centos")}))
	})
	r, _, b, m := updateCase(t, mb, grown)
	acts, err := UpdateActions(r.Layout, m, b, devs, false)
	if err != nil {
		t.Fatal(err)
	}
	got := stepsText(acts)
	swap := m.Disks[0].Partitions[5].FS
	for _, want := range []string{"rewrite the GPT of /dev/loop7: 7 partitions", "make the kernel see the new and grown partitions of /dev/loop7",
		"wipe the first and last MiB of the new partition /dev/loop7p7", "mkfs.xfs -f -q -m uuid=" + m.Disks[0].Partitions[6].FS.UUID,
		"grow the swap filesystem " + r.Layout.Disks[0].Partitions[5].FS.UUID + " on /dev/loop7p6"} {
		if !strings.Contains(got, want) {
			t.Errorf("steps lack %q:\n%s", want, got)
		}
	}
	if swap.UUID != r.Layout.Disks[0].Partitions[5].FS.UUID || strings.Count(got, "\n")+1 != 5 {
		t.Errorf("%d steps (swap %s):\n%s", len(acts), swap.UUID, got)
	}

	_, _, b, m = updateCase(t, mb, mb)
	if acts, err := UpdateActions(r.Layout, m, b, devs, false); err != nil || len(acts) != 0 {
		t.Errorf("the same spec: %v, steps:\n%s", err, stepsText(acts))
	}

	c := lvGrownCase(t)
	r, _, b, m = updateCase(t, c.old, c.new)
	acts, err = UpdateActions(r.Layout, m, b, devs, false)
	if err != nil {
		t.Fatal(err)
	}
	got = stepsText(acts)
	for _, want := range []string{"run: lvm lvextend -l 1280 os/beta-root", "run: lvm lvcreate -y --wipesignatures y --zero y -n logs -l 256 os",
		"grow the ext4 filesystem " + findLV(r.Layout, "os", "beta-root").FS.UUID + " on /dev/os/beta-root", "mke2fs -F -q -t ext4 -U " + findLV(m, "os", "logs").FS.UUID} {
		if !strings.Contains(got, want) {
			t.Errorf("LV steps lack %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, "GPT") || strings.Contains(got, "alpha-root") {
		t.Errorf("LV steps touch what is kept:\n%s", got)
	}
}

// TestUpdateRefusesWhatIsNotInPlace: a break-down that re-creates a volume (here under
// clean, where Diff allows it) is not an update's to apply.
func TestUpdateRefusesWhatIsNotInPlace(t *testing.T) {
	mb := exampleDoc(t, "multiboot-two-images")
	moved := editDoc(t, mb, func(m map[string]any) { obj(diskVolumes(m, 0)[0])["size"] = "6000 MB" })
	r := deployedRecord(t, mb, "seed-a")
	next := mustPlan(t, moved, nil, "seed-b")
	b, err := Diff(r, currentOf(r), next, nil)
	if b == nil {
		t.Fatalf("Diff: %v", err)
	}
	if _, err := UpdateLayout(r.Layout, next, b, false); !errors.Is(err, ErrNotInPlace) || !strings.Contains(err.Error(), "vda#5") {
		t.Errorf("UpdateLayout: %v, want ErrNotInPlace naming vda#5", err)
	}
	if _, err := UpdateActions(r.Layout, next, b, Devices{"vda": "/dev/loop7"}, false); !errors.Is(err, ErrNotInPlace) {
		t.Errorf("UpdateActions: %v, want ErrNotInPlace", err)
	}
}

// TestUpdateRemovedImage: the root of an image removed from the spec stays in the table,
// where it is, with its GUID (the GPT is not even rewritten: nothing else changes);
// with removeData it leaves the table.
func TestUpdateRemovedImage(t *testing.T) {
	mb := exampleDoc(t, "multiboot-two-images")
	devs := Devices{"vda": "/dev/loop7"}
	r, _, b, m := updateCase(t, editDoc(t, mb, withThirdImage), mb)
	od, md := r.Layout.Disks[0], m.Disks[0]
	if len(md.Partitions) != len(od.Partitions) || md.Partitions[6].GUID != od.Partitions[6].GUID || md.Partitions[6].Start != od.Partitions[6].Start {
		t.Fatalf("merged partitions %d (want %d), the left one %+v", len(md.Partitions), len(od.Partitions), md.Partitions[len(md.Partitions)-1])
	}
	if len(m.Images) != 2 {
		t.Errorf("merged images %d, want 2", len(m.Images))
	}
	if acts, err := UpdateActions(r.Layout, m, b, devs, false); err != nil || len(acts) != 0 {
		t.Errorf("steps: %v\n%s", err, stepsText(acts))
	}

	next := mustPlan(t, mb, nil, "seed-b")
	b, err := DiffWith(r, currentOf(r), next, nil, DiffOptions{RemoveData: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := UpdateLayout(r.Layout, next, b, false); !errors.Is(err, ErrNotInPlace) {
		t.Errorf("a destroyed root without removeData: %v", err)
	}
	m, err = UpdateLayout(r.Layout, next, b, true)
	if err != nil {
		t.Fatal(err)
	}
	acts, err := UpdateActions(r.Layout, m, b, devs, true)
	if got := stepsText(acts); err != nil || len(m.Disks[0].Partitions) != 6 || !strings.Contains(got, "rewrite the GPT of /dev/loop7: 6 partitions") {
		t.Errorf("with removeData: %v, %d partitions, steps:\n%s", err, len(m.Disks[0].Partitions), got)
	}
}
