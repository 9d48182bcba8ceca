package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	diskfs "github.com/diskfs/go-diskfs"
	"github.com/diskfs/go-diskfs/backend/file"
	"github.com/diskfs/go-diskfs/partition/gpt"
	"github.com/provisioner/provisioner/bootloader"
	"github.com/provisioner/provisioner/deploy"
	"github.com/provisioner/provisioner/internal/disk"
	"github.com/provisioner/provisioner/internal/run"
	"github.com/provisioner/provisioner/partition"
)

// deployedNode is a node as a deploy of doc left it, without a loop device: each disk an
// image file holding the planned GPT, and a boot directory holding the record,
// boot-info.json (one entry per whole-OS image, with the record's digest) and grubenv.
type deployedNode struct {
	layout  *partition.Layout
	bootDir string
	disks   map[string]string // image file by disk id value
}

// newDeployedNode plans doc on disks of sizes (by id value) with seed and writes the
// node's files under dir; digests are the record's image digests by image name.
func newDeployedNode(t *testing.T, doc, dir string, sizes map[string]uint64, digests map[string]string) *deployedNode {
	t.Helper()
	geo := map[string]partition.Disk{}
	for id, size := range sizes {
		geo[id] = partition.Disk{SizeBytes: size, SectorSize: 512}
	}
	l, err := partition.Plan(loadString(t, doc), geo, "deployed")
	if err != nil {
		t.Fatal(err)
	}
	n := &deployedNode{layout: l, bootDir: filepath.Join(dir, "boot"), disks: map[string]string{}}
	for _, d := range l.Disks {
		n.disks[d.ID.Value] = filepath.Join(dir, d.ID.Value+".img")
		writeTestGPT(t, n.disks[d.ID.Value], d)
	}
	if err := os.MkdirAll(filepath.Join(n.bootDir, "boot", "grub"), 0o755); err != nil {
		t.Fatal(err)
	}
	rec := &partition.Record{Version: partition.RecordVersion, Spec: json.RawMessage(doc), Layout: l, Images: map[string]partition.ImageRecord{}}
	bi := &bootloader.BootInfo{MultibootPartition: "mb-uuid", GrubDir: bootloader.DefaultGrubDir}
	for _, im := range l.Images {
		rec.Images[im.Name] = partition.ImageRecord{Digest: digests[im.Name], Operation: "deploy", At: time.Unix(1, 0).UTC()}
		if im.Target == "/" {
			bi.Elements = append(bi.Elements, bootloader.Element{GrubID: len(bi.Elements), OSID: im.Name, ImageName: im.ImageName,
				ImageUUID: im.ImageUUID, MenuentryID: "entry-" + im.Name, RootUUID: im.RootUUID, Digest: digests[im.Name]})
			if im.Name == l.BootImage {
				bi.CurrentElement = len(bi.Elements) - 1
			}
		}
	}
	writeJSONFile(t, filepath.Join(n.bootDir, bootloader.RecordPath), rec.Encode)
	writeJSONFile(t, filepath.Join(n.bootDir, bootloader.BootInfoPath), bi.Encode)
	return n
}

// writeJSONFile writes what encode returns to path.
func writeJSONFile(t *testing.T, path string, encode func() ([]byte, error)) {
	t.Helper()
	data, err := encode()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// setSaved writes grubenv with saved_entry naming image's entry.
func (n *deployedNode) setSaved(t *testing.T, image string) {
	t.Helper()
	env := &bootloader.Env{}
	env.Set("saved_entry", "entry-"+image)
	writeJSONFile(t, filepath.Join(n.bootDir, bootloader.GrubEnvPath), env.Encode)
}

// writeTestGPT creates the sparse image file path of d's size and writes d's GPT into it
// with go-diskfs, as the applier does on a device.
func writeTestGPT(t *testing.T, path string, d *partition.DiskLayout) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(int64(d.SizeBytes)); err != nil {
		t.Fatal(err)
	}
	f.Close()
	b, err := file.OpenFromPath(path, false)
	if err != nil {
		t.Fatal(err)
	}
	dk, err := diskfs.OpenBackend(b, diskfs.WithSectorSize(diskfs.SectorSize(d.SectorSize)))
	if err != nil {
		t.Fatal(err)
	}
	defer dk.Close()
	tbl := &gpt.Table{LogicalSectorSize: int(d.SectorSize), PhysicalSectorSize: int(d.SectorSize), ProtectiveMBR: true, GUID: d.GUID}
	for _, p := range d.Partitions {
		tbl.Partitions = append(tbl.Partitions, &gpt.Partition{Index: p.Number, Start: p.Start, End: p.End, Type: gpt.Type(p.Type), Name: p.Name, GUID: p.GUID})
	}
	rw, err := dk.Backend.Writable()
	if err != nil {
		t.Fatal(err)
	}
	if err := tbl.Write(rw, dk.Size); err != nil {
		t.Fatal(err)
	}
}

// againstDoc is multiboot-two-images with centos's checksum a file at base.
func againstDoc(t *testing.T, base string) string {
	t.Helper()
	b, err := os.ReadFile("../../examples/multiboot-two-images.json")
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	im := m["images"].([]any)[0].(map[string]any)
	im["url"], im["checksum"] = base+"/centos-7.tar.gz", base+"/SHA256SUMS"
	out, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}

// TestPlanAgainstOffline compares specs with a node given as disk-image files (no loop
// device: the boot files in a directory): the checksum file is fetched and its digest
// compared with the deployed one, grubenv's saved_entry is the default, a missing record
// is the existing clear error, and the image file's bytes never change.
func TestPlanAgainstOffline(t *testing.T) {
	sums := map[string]string{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, ok := sums[strings.TrimPrefix(r.URL.Path, "/")]
		if !ok {
			http.NotFound(w, r)
			return
		}
		fmt.Fprint(w, body)
	}))
	defer srv.Close()
	hex1, hex2 := strings.Repeat("1a", 32), strings.Repeat("2b", 32)
	sums["SHA256SUMS"] = hex1 + "  centos-7.tar.gz\n"
	doc := againstDoc(t, srv.URL)
	dir := t.TempDir()
	n := newDeployedNode(t, doc, dir, map[string]uint64{"vda": 16 << 30}, map[string]string{"centos": "sha256:" + hex1})
	n.setSaved(t, "ubuntu")
	sum := hashFile(t, n.disks["vda"])
	plan := func(doc string) (*partition.Breakdown, error) {
		return PlanAgainst(context.Background(), loadString(t, doc), AgainstOptions{
			Targets: []Target{{Name: "vda", Path: n.disks["vda"]}},
			BootDir: BootDirOptions{Dir: n.bootDir, Env: partition.Env{Run: &run.Fake{}}},
			Fetcher: &deploy.Fetcher{Backoff: func(int) time.Duration { return time.Millisecond }, Retries: 1},
		})
	}
	b, err := plan(doc)
	if err != nil || !b.NothingToDo || b.Bootloader.DefaultBefore != "ubuntu" || b.Bootloader.DefaultAfter != "ubuntu" {
		t.Fatalf("same spec: %v, %+v", err, b)
	}
	sums["SHA256SUMS"] = hex2 + "  centos-7.tar.gz\n"
	b, err = plan(doc)
	if err != nil || b.Images[0].Action != partition.ImageUpdated || b.Images[0].To.Digest != "sha256:"+hex2 || b.Images[0].From.Digest != "sha256:"+hex1 {
		t.Errorf("new checksum: %v, %+v", err, b.Images)
	}
	delete(sums, "SHA256SUMS")
	if _, err := plan(doc); !errors.Is(err, deploy.ErrImage) || !strings.Contains(err.Error(), "image centos") {
		t.Errorf("missing checksum file: %v", err)
	}
	os.Remove(filepath.Join(n.bootDir, bootloader.RecordPath))
	if _, err := plan(doc); !errors.Is(err, partition.ErrNoRecord) || ExitCode(err) != ExitEnvironment {
		t.Errorf("no record: %v", err)
	}
	if got := hashFile(t, n.disks["vda"]); got != sum {
		t.Error("the disk image file changed")
	}
}

// lvmFake answers lvm lvs and vgs with the sizes of l's logical volumes and each group's
// free space, as edit (when not nil) changes them.
func lvmFake(l *partition.Layout, edit func(lvs, free map[string]uint64)) *run.Fake {
	return &run.Fake{Handler: func(c run.Call) (run.Result, error) {
		var rows []string
		lvs, free := recordedLVM(l)
		if edit != nil {
			edit(lvs, free)
		}
		switch strings.Join(c.Argv[:2], " ") {
		case "lvm lvs":
			for name, size := range lvs {
				vg, lv, _ := strings.Cut(name, "/")
				rows = append(rows, fmt.Sprintf(`{"vg_name":%q,"lv_name":%q,"lv_size":"%d"}`, vg, lv, size))
			}
			return run.Result{Stdout: []byte(`{"report":[{"lv":[` + strings.Join(rows, ",") + `]}]}`)}, nil
		case "lvm vgs":
			for vg, n := range free {
				rows = append(rows, fmt.Sprintf(`{"vg_name":%q,"vg_free":"%d"}`, vg, n))
			}
			return run.Result{Stdout: []byte(`{"report":[{"vg":[` + strings.Join(rows, ",") + `]}]}`)}, nil
		}
		return run.Result{}, &run.Error{Argv: c.Argv, ExitCode: 127, Err: run.ErrNotFound}
	}}
}

// TestPlanAgainstOnNode: without --device the spec's disks are found by their ids (a fake
// /dev and sysfs) and LVM is asked for the logical volumes: the same LVM spec has nothing
// to do; a logical volume LVM does not report is refused; one the spec grows is compared
// with the group's free space as LVM reports it.
func TestPlanAgainstOnNode(t *testing.T) {
	b, err := os.ReadFile("../../examples/lvm.json")
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	root := t.TempDir()
	n := newDeployedNode(t, doc, root, map[string]uint64{"vda": 20 << 30}, nil)
	dev, sys := filepath.Join(root, "dev"), filepath.Join(root, "sys")
	os.MkdirAll(filepath.Join(sys, "class", "block", "vda"), 0o755)
	os.MkdirAll(dev, 0o755)
	if err := os.Rename(n.disks["vda"], filepath.Join(dev, "vda")); err != nil {
		t.Fatal(err)
	}
	plan := func(doc string, fake *run.Fake) (*partition.Breakdown, error) {
		return PlanAgainst(context.Background(), loadString(t, doc), AgainstOptions{
			BootDir: BootDirOptions{Dir: n.bootDir, Env: partition.Env{Run: fake, Sys: disk.Sys{SysRoot: sys, DevRoot: dev}}},
		})
	}
	fake := lvmFake(n.layout, nil)
	got, err := plan(doc, fake)
	if err != nil || !got.NothingToDo {
		t.Fatalf("same spec: %v, %+v", err, got)
	}
	if calls := fake.Calls(); len(calls) != 2 || calls[0].Argv[1] != "lvs" || calls[1].Argv[1] != "vgs" {
		t.Errorf("calls %v", calls)
	}
	_, err = plan(doc, lvmFake(n.layout, func(lvs, free map[string]uint64) { delete(lvs, "os/data") }))
	var refused *partition.RefusedError
	if !errors.As(err, &refused) || ExitCode(err) != ExitEnvironment || !strings.Contains(err.Error(), "os/data: the record has it") {
		t.Errorf("missing logical volume: %v", err)
	}
	// LVM reports alpha-root 1 GiB smaller than recorded (shrunk by hand since): the spec
	// grows it back, and the group, which "remaining" filled, has no room.
	got, err = plan(doc, lvmFake(n.layout, func(lvs, free map[string]uint64) { lvs["os/alpha-root"] -= 1 << 30 }))
	if !errors.Is(err, partition.ErrRefused) || !strings.Contains(err.Error(), "vg os: the created and grown logical volumes need 1 GiB, the group has 0 B") {
		t.Errorf("grown into a full group: %v, %+v", err, got)
	}
}

// TestPlanAgainstBootState: the entries carry their versions; the default is grubenv's saved entry,
// else current_element (also when the deploy ramdisk is saved); the booted image is named
// by its entry.
func TestPlanAgainstBootState(t *testing.T) {
	bi := &bootloader.BootInfo{CurrentElement: 1, Elements: []bootloader.Element{
		{GrubID: 0, OSID: "a", ImageName: "A 1", ImageUUID: "ua", Digest: "sha256:aa"},
		{GrubID: 1, OSID: "b", State: bootloader.ElementFailed},
	}}
	zero := 0
	for _, tc := range []struct {
		st            bootloader.Status
		def, booted   string
		entries, desc string
	}{
		{bootloader.Status{Elements: bi.Elements, Saved: 0, Booted: &zero}, "a", "a", "", "saved entry 0, booted 0"},
		{bootloader.Status{Elements: bi.Elements, Saved: 1}, "b", "", "", "saved entry 1, offline"},
		{bootloader.Status{Elements: bi.Elements, Saved: bootloader.RamdiskGrubID}, "b", "", "", "the ramdisk saved"},
	} {
		cur := &partition.Current{}
		bootState(bi, tc.st, cur)
		if cur.Default != tc.def || cur.Booted != tc.booted {
			t.Errorf("%s: default %q booted %q, want %q %q", tc.desc, cur.Default, cur.Booted, tc.def, tc.booted)
		}
		want := []partition.BootEntry{{GrubID: 0, Name: "a", ImageName: "A 1", ImageUUID: "ua", Digest: "sha256:aa"}, {GrubID: 1, Name: "b", State: "failed"}}
		if fmt.Sprint(cur.Entries) != fmt.Sprint(want) {
			t.Errorf("%s: entries %+v", tc.desc, cur.Entries)
		}
	}
}

// withDataDisk is doc with a second disk vdb holding /srv for centos.
func withDataDisk(t *testing.T, doc string) string {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(doc), &m); err != nil {
		t.Fatal(err)
	}
	m["partitions"] = append(m["partitions"].([]any), map[string]any{"type": "disk", "id": map[string]any{"type": "name", "value": "vdb"},
		"volumes": []any{map[string]any{"type": "partition", "mount": "/srv", "file_system": "xfs", "size": "1 GiB", "images": []any{"centos"}}}})
	out, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}

// TestPlanAgainstDiskDropped: a spec that no longer names a disk of the deploy. On the node
// the disk is found by its recorded id and its partitions are destroyed; offline --device
// cannot name it, which is a usage error saying to compare on the node.
func TestPlanAgainstDiskDropped(t *testing.T) {
	b, err := os.ReadFile("../../examples/multiboot-two-images.json")
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	root := t.TempDir()
	n := newDeployedNode(t, withDataDisk(t, doc), root, map[string]uint64{"vda": 16 << 30, "vdb": 2 << 30}, nil)
	dev, sys := filepath.Join(root, "dev"), filepath.Join(root, "sys")
	os.MkdirAll(dev, 0o755)
	for id, img := range n.disks {
		os.MkdirAll(filepath.Join(sys, "class", "block", id), 0o755)
		if err := os.Rename(img, filepath.Join(dev, id)); err != nil {
			t.Fatal(err)
		}
	}
	env := partition.Env{Run: &run.Fake{}, Sys: disk.Sys{SysRoot: sys, DevRoot: dev}}
	got, err := PlanAgainst(context.Background(), loadString(t, doc), AgainstOptions{BootDir: BootDirOptions{Dir: n.bootDir, Env: env}})
	if err != nil {
		t.Fatal(err)
	}
	var vdb []string
	for _, v := range got.Volumes {
		if v.Disk == "vdb" {
			vdb = append(vdb, fmt.Sprintf("%s %s %s lost=%v", v.Name, v.Mount, v.Action, v.DataLost))
		}
	}
	// The planner puts a BIOS boot partition first on every disk (boot mode both).
	if strings.Join(vdb, ",") != "vdb#1  destroyed lost=true,vdb#2 /srv destroyed lost=true" || len(got.Disks) != 2 {
		t.Errorf("on the node: vdb's volumes %v, %d disks drawn", vdb, len(got.Disks))
	}
	_, err = PlanAgainst(context.Background(), loadString(t, doc), AgainstOptions{
		Targets: []Target{{Name: "vda", Path: filepath.Join(dev, "vda")}},
		BootDir: BootDirOptions{Dir: n.bootDir, Env: env},
	})
	if !errors.Is(err, ErrUsage) || !strings.Contains(err.Error(), "disk vdb") || !strings.Contains(err.Error(), "compare on the node") {
		t.Errorf("offline: %v", err)
	}
}
