package partition

import (
	"encoding/json"
	"errors"
	"reflect"
	"regexp"
	"strings"
	"testing"

	"github.com/provisioner/provisioner/schema"
)

// Numbers in this file are worked out by hand in the comments next to them, for
// 512-byte sectors unless a test says otherwise: 1 MiB = 2048 sectors, a GPT with 128
// entries leaves sectors 34 .. N-34 usable, and partitions start on a 2048 boundary.

const secPerMiB = 2048 // 512-byte sectors per MiB

// loadSpec validates doc with schema.Load and fails the test on any error.
func loadSpec(t *testing.T, doc string) *schema.Spec {
	t.Helper()
	spec, _, err := schema.Load(strings.NewReader(doc))
	if err != nil {
		t.Fatalf("schema.Load: %v", err)
	}
	return spec
}

// mustPlan loads doc and plans it, failing the test on any error.
func mustPlan(t *testing.T, doc string, disks map[string]Disk, seed string) *Layout {
	t.Helper()
	l, err := Plan(loadSpec(t, doc), disks, seed)
	if err != nil {
		t.Fatalf("Plan: %v", err)
	}
	return l
}

// planLayoutError loads doc, plans it and returns the LayoutError it must fail with.
func planLayoutError(t *testing.T, doc string, disks map[string]Disk) *LayoutError {
	t.Helper()
	l, err := Plan(loadSpec(t, doc), disks, "seed")
	if err == nil {
		t.Fatalf("Plan succeeded, want a layout error; disks: %s", diskSummary(l))
	}
	if !errors.Is(err, ErrLayout) {
		t.Fatalf("errors.Is(err, ErrLayout) = false for %v", err)
	}
	var le *LayoutError
	if !errors.As(err, &le) {
		t.Fatalf("error %T is not a *LayoutError: %v", err, err)
	}
	return le
}

func diskSummary(l *Layout) string {
	var b strings.Builder
	for _, d := range l.Disks {
		b.WriteString(d.ID.Value + ":")
		for _, p := range d.Partitions {
			b.WriteString(" " + p.Name)
		}
		b.WriteString("; ")
	}
	return b.String()
}

type wantPart struct {
	num        int
	name       string
	role       Role
	start, end uint64
	typ        string
}

// checkParts compares every partition of d with want, in table order.
func checkParts(t *testing.T, d *DiskLayout, want []wantPart) {
	t.Helper()
	if len(d.Partitions) != len(want) {
		var got []string
		for _, p := range d.Partitions {
			got = append(got, p.Name)
		}
		t.Fatalf("disk %s has %d partitions %q, want %d", d.ID, len(d.Partitions), got, len(want))
	}
	for i, w := range want {
		p := d.Partitions[i]
		if p.Number != w.num || p.Name != w.name || p.Role != w.role || p.Start != w.start || p.End != w.end || p.Type != w.typ {
			t.Errorf("disk %s partition %d:\n got #%d %q %s %d-%d %s\nwant #%d %q %s %d-%d %s", d.ID, i,
				p.Number, p.Name, p.Role, p.Start, p.End, p.Type, w.num, w.name, w.role, w.start, w.end, w.typ)
		}
		if p.SizeBytes != (p.End-p.Start+1)*d.SectorSize {
			t.Errorf("disk %s partition %d: SizeBytes %d, want %d", d.ID, p.Number, p.SizeBytes, (p.End-p.Start+1)*d.SectorSize)
		}
	}
	if err := d.Validate(); err != nil {
		t.Error("Validate:", err)
	}
}

func diskByID(t *testing.T, l *Layout, id string) *DiskLayout {
	t.Helper()
	for _, d := range l.Disks {
		if d.ID.Value == id {
			return d
		}
	}
	t.Fatalf("no disk %q in the layout", id)
	return nil
}

func imageByName(t *testing.T, l *Layout, name string) *Image {
	t.Helper()
	for _, im := range l.Images {
		if im.Name == name {
			return im
		}
	}
	t.Fatalf("no image %q in the layout", name)
	return nil
}

func mountPaths(im *Image) []string {
	var out []string
	for _, m := range im.Mounts {
		out = append(out, m.Path)
	}
	return out
}

func TestPlanFixedSizesTwoImages(t *testing.T) {
	const doc = `{
	  "images": [
	    {"name": "a", "url": "http://x/a.tar.gz", "target": "/", "boot": true},
	    {"name": "b", "url": "http://x/b.tar.gz", "target": "/"}
	  ],
	  "partitions": [{
	    "type": "disk", "id": {"type": "name", "value": "vda"}, "size": "4 GiB",
	    "volumes": [
	      {"type": "partition", "mount": "/", "file_system": "ext4", "size": "1 GiB", "images": ["a"]},
	      {"type": "partition", "mount": "/", "file_system": "ext4", "size": "1000 MB", "images": ["b"]},
	      {"type": "partition", "mount": "swap", "file_system": "swap", "size": 512, "images": ["a", "b"]},
	      {"type": "partition", "mount": "/srv", "file_system": "ext4", "size": "204801 s"}
	    ]
	  }]
	}`
	l := mustPlan(t, doc, nil, "fixed")
	if len(l.Disks) != 1 {
		t.Fatalf("%d disks, want 1", len(l.Disks))
	}
	d := l.Disks[0]
	// 4 GiB = 8388608 sectors. Usable 34 .. 8388608-34 = 8388574. Partitions live in
	// [2048, alignDown(8388575, 2048) = 8386560), i.e. MiB 1 .. 4095: 4094 MiB.
	if d.Sectors != 8388608 || d.FirstUsable != 34 || d.LastUsable != 8388574 || d.Alignment != 2048 || d.SectorSize != 512 {
		t.Fatalf("geometry: sectors %d usable %d-%d alignment %d sector %d", d.Sectors, d.FirstUsable, d.LastUsable, d.Alignment, d.SectorSize)
	}
	// boot_mode defaults to both and there are two root images, so the planner adds
	// BIOS boot (1 MiB), multiboot (100 MiB) and ESP (20 MiB), in that order.
	//   1 BIOS boot  MiB    1..2     2048 ..    4095
	//   2 multiboot  MiB    2..102   4096 ..  208895
	//   3 ESP        MiB  102..122   208896 .. 249855
	//   4 a root 1 GiB = 1024 MiB:  MiB 122..1146    249856 .. 2347007
	//   5 b root 1000 MB = 953.67 MiB, rounded up to 954: MiB 1146..2100  2347008 .. 4300799
	//   6 swap 512 MiB: MiB 2100..2612   4300800 .. 5349375
	//   7 /srv 204801 s = 100 MiB + 512 B, rounded up to 101 MiB: MiB 2612..2713  5349376 .. 5556223
	checkParts(t, d, []wantPart{
		{1, "BIOS boot", RoleBIOSBoot, 2048, 4095, TypeBIOSBoot},
		{2, "multiboot", RoleMultiboot, 4096, 208895, TypeLinuxFS},
		{3, "EFI system", RoleESP, 208896, 249855, TypeESP},
		{4, "a-root", RoleVolume, 249856, 2347007, TypeLinuxFS},
		{5, "b-root", RoleVolume, 2347008, 4300799, TypeLinuxFS},
		{6, "swap", RoleVolume, 4300800, 5349375, TypeLinuxSwap},
		{7, "a-srv", RoleVolume, 5349376, 5556223, TypeLinuxFS},
	})
	wantBytes := []uint64{1 << 20, 100 << 20, 20 << 20, 1024 << 20, 954 << 20, 512 << 20, 101 << 20}
	for i, p := range d.Partitions {
		if p.SizeBytes != wantBytes[i] {
			t.Errorf("partition %d: %d bytes, want %d", p.Number, p.SizeBytes, wantBytes[i])
		}
	}
	for i, src := range []string{"", "", "", "/partitions/0/volumes/0", "/partitions/0/volumes/1", "/partitions/0/volumes/2", "/partitions/0/volumes/3"} {
		if d.Partitions[i].Source != src {
			t.Errorf("partition %d: source %q, want %q", i+1, d.Partitions[i].Source, src)
		}
	}
	if fs := d.Partitions[3].FS; fs == nil || fs.Device != "vda#4" || fs.Type != "ext4" || fs.Mount != "/" || fs.Label != "a" {
		t.Errorf("a's root filesystem: %+v", fs)
	}
	if fs := d.Partitions[5].FS; fs == nil || fs.Type != "swap" || fs.FstabOptions != "sw" || fs.Label != "swap" {
		t.Errorf("swap filesystem: %+v", fs)
	}
	if l.BootImage != "a" || l.BootMode != "both" || l.Policy != "clean" {
		t.Errorf("boot image %q, mode %q, policy %q", l.BootImage, l.BootMode, l.Policy)
	}
}

func TestPlanPercentSizes(t *testing.T) {
	const doc = `{
	  "images": [{"name": "os", "url": "http://x/os.tar.gz", "target": "/"}],
	  "boot_mode": "bios",
	  "partitions": [{
	    "type": "disk", "id": {"type": "name", "value": "vda"}, "size": "1003 MiB",
	    "volumes": [
	      {"type": "partition", "mount": "/", "file_system": "ext4", "size": "25%"},
	      {"type": "partition", "mount": "/var", "file_system": "ext4", "size": "12.34%"},
	      {"type": "partition", "mount": "/home", "file_system": "ext4", "size": "32.3%"},
	      {"type": "partition", "mount": "/tmp", "file_system": "ext4", "size": "0.1%"}
	    ]
	  }]
	}`
	l := mustPlan(t, doc, nil, "pct")
	// 1003 MiB = 2054144 sectors; usable ends at 2054110, so partitions live in
	// [2048, alignDown(2054111, 2048) = 2052096): 1001 MiB. BIOS boot takes 1 MiB, which
	// leaves 1000 MiB for the volumes, the base of every percentage:
	//   25%    of 1000 MiB = 250 MiB                       MiB   2..252   4096 ..  516095
	//   12.34% of 1000 MiB = 123.4 MiB, rounded down: 123 MiB   252..375   516096 ..  767999
	//   32.3%  of 1000 MiB = exactly 323 MiB                 375..698   768000 .. 1429503
	//   0.1%   of 1000 MiB = exactly 1 MiB                   698..699  1429504 .. 1431551
	checkParts(t, l.Disks[0], []wantPart{
		{1, "BIOS boot", RoleBIOSBoot, 2048, 4095, TypeBIOSBoot},
		{2, "root", RoleVolume, 4096, 516095, TypeLinuxFS},
		{3, "var", RoleVolume, 516096, 767999, TypeLinuxFS},
		{4, "home", RoleVolume, 768000, 1429503, TypeLinuxFS},
		{5, "tmp", RoleVolume, 1429504, 1431551, TypeLinuxFS},
	})
}

func TestPlanRemainingWithTail(t *testing.T) {
	// Volumes A, R = remaining, B, C: B and C are declared after "remaining", so they
	// are placed from the end of the disk backwards and R fills the gap.
	const doc = `{
	  "images": [{"name": "os", "url": "http://x/os.tar.gz", "target": "/"}],
	  "boot_mode": "bios",
	  "partitions": [{
	    "type": "disk", "id": {"type": "name", "value": "vda"}, "size": "2 GiB",
	    "volumes": [
	      {"type": "partition", "name": "A", "mount": "/boot", "file_system": "ext4", "size": "100 MiB"},
	      {"type": "partition", "name": "R", "mount": "/", "file_system": "ext4", "size": "remaining"},
	      {"type": "partition", "name": "B", "mount": "/var", "file_system": "ext4", "size": "200 MiB"},
	      {"type": "partition", "name": "C", "mount": "/home", "file_system": "ext4", "size": "300 MiB"}
	    ]
	  }]
	}`
	l := mustPlan(t, doc, nil, "tail")
	d := l.Disks[0]
	// 2 GiB = 4194304 sectors; last usable 4194270; the last aligned MiB ends at
	// alignDown(4194271, 2048) - 1 = 4192256 - 1 = 4192255 (MiB 2046..2047).
	//   1 BIOS boot MiB 1..2               2048 ..    4095
	//   2 A 100 MiB, MiB 2..102            4096 ..  208895
	//   5 C 300 MiB ends at the last aligned sector: MiB 1747..2047  3577856 .. 4192255
	//   4 B 200 MiB right before C: MiB 1547..1747                   3168256 .. 3577855
	//   3 R the gap, MiB 102..1547 = 1445 MiB (2046 - 1 - 100 - 200 - 300) 208896 .. 3168255
	checkParts(t, d, []wantPart{
		{1, "BIOS boot", RoleBIOSBoot, 2048, 4095, TypeBIOSBoot},
		{2, "A", RoleVolume, 4096, 208895, TypeLinuxFS},
		{3, "R", RoleVolume, 208896, 3168255, TypeLinuxFS},
		{4, "B", RoleVolume, 3168256, 3577855, TypeLinuxFS},
		{5, "C", RoleVolume, 3577856, 4192255, TypeLinuxFS},
	})
	if last := d.Partitions[4].End; last != alignDown(d.LastUsable+1, d.Alignment)-1 {
		t.Errorf("C ends at %d, not at the last aligned sector", last)
	}
	if got := d.Partitions[2].SizeBytes; got != 1445<<20 {
		t.Errorf("R is %d bytes, want 1445 MiB", got)
	}
}

func TestPlanPVMetadata(t *testing.T) {
	const doc = `{
	  "images": [{"name": "os", "url": "http://x/os.tar.gz", "target": "/"}],
	  "boot_mode": "bios",
	  "partitions": [
	    {"type": "disk", "id": {"type": "name", "value": "vda"}, "size": "4 GiB",
	     "volumes": [
	       {"type": "partition", "mount": "/", "file_system": "ext4", "size": "1 GiB"},
	       {"type": "pv", "vg": "data", "size": "1 GiB"},
	       {"type": "pv", "vg": "data", "size": "1 GiB", "lvm_meta_size": "64"},
	       {"type": "pv", "vg": "data", "size": "103 MiB", "lvm_meta_size": "1.5 MiB"}
	     ]},
	    {"type": "vg", "id": "data", "volumes": [
	      {"type": "lv", "name": "srv", "mount": "/srv", "file_system": "xfs", "size": "50%"}
	    ]}
	  ]
	}`
	l := mustPlan(t, doc, nil, "pv")
	if len(l.VGs) != 1 {
		t.Fatalf("%d vgs, want 1", len(l.VGs))
	}
	vg := l.VGs[0]
	type wantPV struct {
		part           int
		size, mda      uint64
		copies         int
		start, extents uint64
	}
	const MiB = 1 << 20
	// Partitions: 1 BIOS boot, 2 root, then the pvs as 3, 4, 5.
	want := []wantPV{
		// No lvm_meta_size: lvm2's default area in the first MiB, data at 1 MiB,
		// (1024 - 1) / 4 = 255.75 -> 255 extents.
		{3, 1024 * MiB, 1020 << 10, 1, 1 * MiB, 255},
		// 64 MiB of metadata, one copy (pvcreate --metadatasize): data at
		// alignUp(4 KiB + 64 MiB, 1 MiB) = 65 MiB, nothing kept at the end:
		// (1024 - 65) / 4 = 239.75 -> 239 extents.
		{4, 1024 * MiB, 64 * MiB, 1, 65 * MiB, 239},
		// 1.5 MiB: data at alignUp(4 KiB + 1.5 MiB, 1 MiB) = 2 MiB:
		// (103 - 2) / 4 = 25.25 -> 25 extents.
		{5, 103 * MiB, 3 * MiB / 2, 1, 2 * MiB, 25},
	}
	if len(vg.PVs) != len(want) {
		t.Fatalf("%d pvs, want %d", len(vg.PVs), len(want))
	}
	for i, w := range want {
		pv := vg.PVs[i]
		got := wantPV{pv.Partition, pv.SizeBytes, pv.MetadataBytes, pv.MetadataCopies, pv.DataStart, pv.Extents}
		if got != w || pv.Disk != "vda" {
			t.Errorf("pv %d: got %+v on %s, want %+v on vda", i, got, pv.Disk, w)
		}
	}
	// 255 + 239 + 25 = 519 extents; 50% is 259 (rounded down), leaving 260 free.
	if vg.ExtentSize != 4*MiB || vg.Extents != 519 || vg.FreeExtents != 260 {
		t.Errorf("vg: extent %d, %d extents, %d free; want 4 MiB, 519, 260", vg.ExtentSize, vg.Extents, vg.FreeExtents)
	}
	if lv := vg.LVs[0]; lv.Extents != 259 || lv.SizeBytes != 259*4*MiB || lv.FS.Device != "/dev/data/srv" {
		t.Errorf("lv srv: %d extents, %d bytes, device %q", lv.Extents, lv.SizeBytes, lv.FS.Device)
	}
	d := l.Disks[0]
	for _, n := range []int{3, 4, 5} {
		p := d.Partitions[n-1]
		if p.Role != RolePV || p.Type != TypeLinuxLVM || p.VG != "data" || p.Name != "pv-data" || p.FS != nil {
			t.Errorf("pv partition %d: role %s type %s vg %q name %q fs %v", n, p.Role, p.Type, p.VG, p.Name, p.FS)
		}
	}
}

func TestPlanLVMVGBeforeDisk(t *testing.T) {
	// The vg comes first in "partitions"; its pv is on the disk declared after it.
	const doc = `{
	  "images": [{"name": "os", "url": "http://x/os.tar.gz", "target": "/"}],
	  "boot_mode": "uefi",
	  "partitions": [
	    {"type": "vg", "id": "os", "volumes": [
	      {"type": "lv", "name": "root", "mount": "/", "file_system": "ext4", "size": "5 GiB"},
	      {"type": "lv", "name": "var", "mount": "/var", "file_system": "ext4", "size": "10%"},
	      {"type": "lv", "name": "tmp", "mount": "/tmp", "file_system": "ext4", "size": "1 MiB"},
	      {"type": "lv", "name": "data", "mount": "/data", "file_system": "xfs", "size": "1000 MB"},
	      {"type": "lv", "name": "home", "mount": "/home", "file_system": "ext4", "size": "remaining"}
	    ]},
	    {"type": "disk", "id": {"type": "name", "value": "vda"}, "size": "8 GiB",
	     "volumes": [
	       {"type": "partition", "mount": "/boot", "file_system": "ext4", "size": "500 MB"},
	       {"type": "pv", "vg": "os", "size": "remaining"}
	     ]}
	  ]
	}`
	l := mustPlan(t, doc, nil, "lvm")
	// 8 GiB = 16777216 sectors; partitions in [2048, alignDown(16777183, 2048) =
	// 16775168): MiB 1..8191. uefi: ESP only.
	//   1 ESP 20 MiB, MiB 1..21                        2048 ..    43007
	//   2 /boot 500 MB = 476.84 MiB -> 477, MiB 21..498   43008 ..  1019903
	//   3 pv remaining, MiB 498..8191 = 7693 MiB         1019904 .. 16775167
	checkParts(t, diskByID(t, l, "vda"), []wantPart{
		{1, "EFI system", RoleESP, 2048, 43007, TypeESP},
		{2, "boot", RoleVolume, 43008, 1019903, TypeLinuxFS},
		{3, "pv-os", RolePV, 1019904, 16775167, TypeLinuxLVM},
	})
	if len(l.VGs) != 1 {
		t.Fatalf("%d vgs, want 1", len(l.VGs))
	}
	vg := l.VGs[0]
	if vg.Name != "os" || vg.Source != "/partitions/0" || len(vg.PVs) != 1 || vg.PVs[0].PartRef != (PartRef{"vda", 3}) || vg.PVs[0].Source != "/partitions/1/volumes/1" {
		t.Fatalf("vg %q at %s with pvs %+v", vg.Name, vg.Source, vg.PVs)
	}
	// pv: (7693 MiB - 1 MiB) / 4 MiB = 1923 extents.
	//   root 5 GiB = 1280 extents
	//   var  10% of 1923 = 192.3 -> 192 (rounded down)
	//   tmp  1 MiB -> 1 extent (rounded up)
	//   data 1000 MB = 238.42 extents -> 239 (rounded up)
	//   home remaining = 1923 - 1280 - 192 - 1 - 239 = 211
	if vg.Extents != 1923 || vg.FreeExtents != 0 {
		t.Errorf("vg: %d extents, %d free; want 1923, 0", vg.Extents, vg.FreeExtents)
	}
	want := map[string]uint64{"root": 1280, "var": 192, "tmp": 1, "data": 239, "home": 211}
	if len(vg.LVs) != len(want) {
		t.Fatalf("%d lvs, want %d", len(vg.LVs), len(want))
	}
	for i, lv := range vg.LVs {
		if lv.Extents != want[lv.Name] || lv.SizeBytes != lv.Extents*ExtentSize {
			t.Errorf("lv %s: %d extents (%d bytes), want %d", lv.Name, lv.Extents, lv.SizeBytes, want[lv.Name])
		}
		if lv.Source != schema.Ptr("/partitions/0/volumes", i) || lv.FS == nil || lv.FS.Device != "/dev/os/"+lv.Name {
			t.Errorf("lv %s: source %q fs %+v", lv.Name, lv.Source, lv.FS)
		}
	}
	im := l.Images[0]
	if got, want := mountPaths(im), []string{"/", "/boot", "/data", "/home", "/tmp", "/var"}; !reflect.DeepEqual(got, want) {
		t.Errorf("mounts %q, want %q", got, want)
	}
	if im.RootUUID == "" || im.RootUUID != vg.LVs[0].FS.UUID {
		t.Errorf("root uuid %q, want the root lv's %q", im.RootUUID, vg.LVs[0].FS.UUID)
	}
}

func TestPlanFourKSectors(t *testing.T) {
	const doc = `{
	  "images": [{"name": "os", "url": "http://x/os.tar.gz", "target": "/"}],
	  "partitions": [{
	    "type": "disk", "id": {"type": "name", "value": "vda"},
	    "volumes": [
	      {"type": "partition", "mount": "/", "file_system": "ext4", "size": "1000 MB"},
	      {"type": "partition", "mount": "/var", "file_system": "ext4", "size": "remaining"},
	      {"type": "partition", "mount": "swap", "file_system": "swap", "size": "4097 s"}
	    ]
	  }]
	}`
	l := mustPlan(t, doc, map[string]Disk{"vda": {SizeBytes: 4 << 30, SectorSize: 4096}}, "4k")
	d := l.Disks[0]
	// 4 GiB of 4096-byte sectors = 1048576 sectors. The 16 KiB entry array is 4 sectors,
	// so the first usable LBA is 2 + 4 = 6 and the last 1048576 - 6 = 1048570. 1 MiB is
	// 256 sectors: partitions live in [256, alignDown(1048571, 256) = 1048320).
	if d.Sectors != 1048576 || d.FirstUsable != 6 || d.LastUsable != 1048570 || d.Alignment != 256 || d.SectorSize != 4096 {
		t.Fatalf("geometry: sectors %d usable %d-%d alignment %d sector %d", d.Sectors, d.FirstUsable, d.LastUsable, d.Alignment, d.SectorSize)
	}
	//   1 BIOS boot 1 MiB,   MiB 1..2          256 ..     511
	//   2 ESP 20 MiB,        MiB 2..22         512 ..    5631
	//   3 / 1000 MB -> 954 MiB, MiB 22..976    5632 ..  249855
	//   5 swap "4097 s" = 4097 x 512 B = 2097664 B = 512.125 sectors of 4 KiB -> 3 MiB,
	//     at the end: MiB 4092..4095     1047552 .. 1048319
	//   4 /var the rest, MiB 976..4092 = 3116 MiB    249856 .. 1047551
	checkParts(t, d, []wantPart{
		{1, "BIOS boot", RoleBIOSBoot, 256, 511, TypeBIOSBoot},
		{2, "EFI system", RoleESP, 512, 5631, TypeESP},
		{3, "root", RoleVolume, 5632, 249855, TypeLinuxFS},
		{4, "var", RoleVolume, 249856, 1047551, TypeLinuxFS},
		{5, "swap", RoleVolume, 1047552, 1048319, TypeLinuxSwap},
	})
	// Sizes in bytes are what they are on a 512-byte disk.
	for i, want := range []uint64{1 << 20, 20 << 20, 954 << 20, 3116 << 20, 3 << 20} {
		if got := d.Partitions[i].SizeBytes; got != want {
			t.Errorf("partition %d: %d bytes, want %d", i+1, got, want)
		}
	}
}

func TestPlanRejects(t *testing.T) {
	cases := []struct {
		name  string
		doc   string
		disks map[string]Disk
		ptr   string
		msg   []string
	}{
		{
			// 1 GiB: partitions in MiB 1..1023 = 1022 MiB. Needed: 2048 + 1 (BIOS boot).
			name: "disk too small",
			doc: `{"images": [{"name": "os", "url": "u", "target": "/"}], "boot_mode": "bios",
			  "partitions": [{"type": "disk", "id": {"type": "name", "value": "vda"}, "size": "1 GiB",
			    "volumes": [{"type": "partition", "mount": "/", "file_system": "ext4", "size": "2 GiB"}]}]}`,
			ptr: "/partitions/0",
			msg: []string{"need 2049.00 MiB", "volumes 2048.00 MiB + 1.00 MiB", "has 1022.00 MiB for partitions"},
		},
		{
			// The same disk given by the caller: the caller's size wins over the spec's.
			name:  "device smaller than the spec says",
			disks: map[string]Disk{"vda": {SizeBytes: 1 << 30, SectorSize: 512}},
			doc: `{"images": [{"name": "os", "url": "u", "target": "/"}], "boot_mode": "bios",
			  "partitions": [{"type": "disk", "id": {"type": "name", "value": "vda"}, "size": "100 GiB",
			    "volumes": [{"type": "partition", "mount": "/", "file_system": "ext4", "size": "2 GiB"}]}]}`,
			ptr: "/partitions/0",
			msg: []string{"need 2049.00 MiB", "has 1022.00 MiB for partitions"},
		},
		{
			// 2 GiB: 2046 MiB of partitions, the pv gets 2045, (2045 - 1) / 4 = 511
			// extents = 2044 MiB; the lv needs 3 GiB = 768 extents = 3072 MiB.
			name: "volume group too small",
			doc: `{"images": [{"name": "os", "url": "u", "target": "/"}], "boot_mode": "bios",
			  "partitions": [
			    {"type": "disk", "id": {"type": "name", "value": "vda"}, "size": "2 GiB",
			     "volumes": [{"type": "pv", "vg": "big", "size": "remaining"}]},
			    {"type": "vg", "id": "big", "volumes": [
			      {"type": "lv", "name": "root", "mount": "/", "file_system": "ext4", "size": "3 GiB"}]}]}`,
			ptr: "/partitions/1",
			msg: []string{`volume group "big"`, "need 3072.00 MiB", "provide 2044.00 MiB", "511 extents"},
		},
		{
			// 1022 MiB of partitions: BIOS boot 1 + / 1021 leaves nothing.
			name: "remaining with nothing left on a disk",
			doc: `{"images": [{"name": "os", "url": "u", "target": "/"}], "boot_mode": "bios",
			  "partitions": [{"type": "disk", "id": {"type": "name", "value": "vda"}, "size": "1 GiB",
			    "volumes": [
			      {"type": "partition", "mount": "/", "file_system": "ext4", "size": "1021 MiB"},
			      {"type": "partition", "mount": "/var", "file_system": "ext4", "size": "remaining"}]}]}`,
			ptr: "/partitions/0/volumes/1/size",
			msg: []string{"nothing is left", "1022.00 MiB"},
		},
		{
			// 2 GiB: the pv has 511 extents = 2044 MiB, all taken by root.
			name: "remaining with nothing left in a vg",
			doc: `{"images": [{"name": "os", "url": "u", "target": "/"}], "boot_mode": "bios",
			  "partitions": [
			    {"type": "disk", "id": {"type": "name", "value": "vda"}, "size": "2 GiB",
			     "volumes": [{"type": "pv", "vg": "os", "size": "remaining"}]},
			    {"type": "vg", "id": "os", "volumes": [
			      {"type": "lv", "name": "root", "mount": "/", "file_system": "ext4", "size": "2044 MiB"},
			      {"type": "lv", "name": "var", "mount": "/var", "file_system": "ext4", "size": "remaining"}]}]}`,
			ptr: "/partitions/1/volumes/1/size",
			msg: []string{"nothing is left", `volume group "os"`},
		},
		{
			// 0.05% of 1022 MiB is 0.5 MiB: less than one aligned MiB.
			name: "percentage below one MiB",
			doc: `{"images": [{"name": "os", "url": "u", "target": "/"}], "boot_mode": "bios",
			  "partitions": [{"type": "disk", "id": {"type": "name", "value": "vda"}, "size": "1 GiB",
			    "volumes": [
			      {"type": "partition", "mount": "/", "file_system": "ext4", "size": "remaining"},
			      {"type": "partition", "mount": "/var", "file_system": "ext4", "size": "0.05%"}]}]}`,
			ptr: "/partitions/0/volumes/1/size",
			msg: []string{"less than 1 MiB"},
		},
		{
			name: "disk without a size or a device",
			doc: `{"images": [{"name": "os", "url": "u", "target": "/"}],
			  "partitions": [{"type": "disk", "id": {"type": "name", "value": "vda"},
			    "volumes": [{"type": "partition", "mount": "/", "file_system": "ext4", "size": "remaining"}]}]}`,
			disks: map[string]Disk{"vdb": {SizeBytes: 10 << 30}},
			ptr:   "/partitions/0",
			msg:   []string{"no size known for disk vda", "--device vda="},
		},
		{
			name:  "sector size not a power of two",
			disks: map[string]Disk{"vda": {SizeBytes: 10 << 30, SectorSize: 520}},
			doc: `{"images": [{"name": "os", "url": "u", "target": "/"}],
			  "partitions": [{"type": "disk", "id": {"type": "name", "value": "vda"},
			    "volumes": [{"type": "partition", "mount": "/", "file_system": "ext4", "size": "remaining"}]}]}`,
			ptr: "/partitions/0",
			msg: []string{"sector size 520"},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			le := planLayoutError(t, c.doc, c.disks)
			if len(le.Problems) != 1 {
				t.Fatalf("%d problems, want 1: %v", len(le.Problems), le)
			}
			p := le.Problems[0]
			if p.Pointer != c.ptr {
				t.Errorf("pointer %q, want %q (%s)", p.Pointer, c.ptr, p.Message)
			}
			for _, m := range c.msg {
				if !strings.Contains(p.Message, m) {
					t.Errorf("message %q does not contain %q", p.Message, m)
				}
			}
			if !strings.Contains(le.Error(), c.ptr+": ") {
				t.Errorf("Error() %q does not name %s", le.Error(), c.ptr)
			}
		})
	}
}

func TestPlanDiskFromDeviceMap(t *testing.T) {
	// A disk without "size" plans once the caller says how big it is; the map may use
	// the name without /dev/.
	const doc = `{"images": [{"name": "os", "url": "u", "target": "/"}], "boot_mode": "bios",
	  "partitions": [{"type": "disk", "id": {"type": "path", "value": "/dev/sdz"},
	    "volumes": [{"type": "partition", "mount": "/", "file_system": "ext4", "size": "remaining"}]}]}`
	l := mustPlan(t, doc, map[string]Disk{"sdz": {Path: "/dev/sdz", SizeBytes: 1 << 30}}, "map")
	d := l.Disks[0]
	// SectorSize 0 means 512. Partitions in MiB 1..1023.
	checkParts(t, d, []wantPart{
		{1, "BIOS boot", RoleBIOSBoot, 2048, 4095, TypeBIOSBoot},
		{2, "root", RoleVolume, 4096, 2095103, TypeLinuxFS},
	})
	// A real device path names its partitions as the kernel does.
	if got := d.Partitions[1].FS.Device; got != "/dev/sdz2" {
		t.Errorf("device %q, want /dev/sdz2", got)
	}
}

func TestSchemaRejectsSizes(t *testing.T) {
	cases := []struct {
		name, volumes, ptr, msg string
	}{
		{"101 percent",
			`{"type": "partition", "mount": "/", "file_system": "ext4", "size": "101%"}`,
			"/partitions/0/volumes/0/size", "exceeds 100%"},
		{"percentages over 100 in all",
			`{"type": "partition", "mount": "/", "file_system": "ext4", "size": "60%"},
			 {"type": "partition", "mount": "/var", "file_system": "ext4", "size": "50%"}`,
			"/partitions/0/volumes/1/size", "more than 100%"},
		{"two remaining",
			`{"type": "partition", "mount": "/", "file_system": "ext4", "size": "remaining"},
			 {"type": "partition", "mount": "/var", "file_system": "ext4", "size": "remaining"}`,
			"/partitions/0/volumes/1/size", `second "remaining"`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			doc := `{"images": [{"name": "os", "url": "u", "target": "/"}],
			  "partitions": [{"type": "disk", "id": {"type": "name", "value": "vda"}, "size": "10 GiB",
			    "volumes": [` + c.volumes + `]}]}`
			_, _, err := schema.Load(strings.NewReader(doc))
			var ve *schema.ValidationError
			if !errors.As(err, &ve) {
				t.Fatalf("schema.Load: %v, want a *schema.ValidationError", err)
			}
			found := false
			for _, p := range ve.Problems {
				if p.Pointer == c.ptr && strings.Contains(p.Message, c.msg) {
					found = true
				}
			}
			if !found {
				t.Errorf("no problem at %s containing %q in %v", c.ptr, c.msg, ve.Problems)
			}
		})
	}
}

func roles(d *DiskLayout) []Role {
	var out []Role
	for _, p := range d.Partitions {
		out = append(out, p.Role)
	}
	return out
}

var vfatUUID = regexp.MustCompile(`^[0-9A-F]{4}-[0-9A-F]{4}$`)

func TestPlanBootModes(t *testing.T) {
	const tmpl = `{"images": [{"name": "os", "url": "u", "target": "/"}], %MODE%
	  "partitions": [
	    {"type": "disk", "id": {"type": "name", "value": "sda"}, "size": "4 GiB",
	     "volumes": [{"type": "partition", "mount": "/", "file_system": "ext4", "size": "remaining"}]},
	    {"type": "disk", "id": {"type": "name", "value": "sdb"}, "size": "4 GiB",
	     "volumes": [{"type": "partition", "mount": "/srv", "file_system": "ext4", "size": "remaining"}]}]}`
	cases := []struct {
		name, mode string
		sda, sdb   []Role
		esp        bool
	}{
		{"bios", `"boot_mode": "bios",`, []Role{RoleBIOSBoot, RoleVolume}, []Role{RoleBIOSBoot, RoleVolume}, false},
		{"uefi", `"boot_mode": "uefi",`, []Role{RoleESP, RoleVolume}, []Role{RoleVolume}, true},
		{"both", `"boot_mode": "both",`, []Role{RoleBIOSBoot, RoleESP, RoleVolume}, []Role{RoleBIOSBoot, RoleVolume}, true},
		{"default is both", ``, []Role{RoleBIOSBoot, RoleESP, RoleVolume}, []Role{RoleBIOSBoot, RoleVolume}, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			l := mustPlan(t, strings.Replace(tmpl, "%MODE%", c.mode, 1), nil, "modes")
			sda, sdb := diskByID(t, l, "sda"), diskByID(t, l, "sdb")
			if got := roles(sda); !reflect.DeepEqual(got, c.sda) {
				t.Errorf("sda roles %v, want %v", got, c.sda)
			}
			if got := roles(sdb); !reflect.DeepEqual(got, c.sdb) {
				t.Errorf("sdb roles %v, want %v", got, c.sdb)
			}
			if (l.ESP != nil) != c.esp {
				t.Fatalf("layout ESP %v, want present=%v", l.ESP, c.esp)
			}
			if l.Multiboot != nil {
				t.Errorf("multiboot planned for a single image")
			}
			for _, d := range []*DiskLayout{sda, sdb} {
				for _, p := range d.Partitions {
					switch p.Role {
					case RoleBIOSBoot:
						if p.Type != TypeBIOSBoot || p.Sectors() != secPerMiB || p.FS != nil || p.Start != 2048 {
							t.Errorf("%s BIOS boot: type %s, %d sectors at %d, fs %v", d.ID, p.Type, p.Sectors(), p.Start, p.FS)
						}
					case RoleESP:
						if p.Type != TypeESP || p.SizeBytes != DefaultESPSize || p.FS != l.ESP {
							t.Errorf("%s ESP: type %s, %d bytes", d.ID, p.Type, p.SizeBytes)
						}
						if p.FS.Type != "vfat" || p.FS.Label != "ESP" || !vfatUUID.MatchString(p.FS.UUID) || p.FS.Device != d.ID.Value+"#"+itoa(p.Number) {
							t.Errorf("ESP filesystem %+v", p.FS)
						}
					}
				}
			}
		})
	}
}

func itoa(n int) string {
	b, _ := json.Marshal(n)
	return string(b)
}

func TestPlanMultiboot(t *testing.T) {
	cases := []struct {
		name   string
		images string
		extra  string
		want   bool
		size   uint64
	}{
		{"one image", `{"name": "a", "url": "u", "target": "/"}`, ``, false, 0},
		{"OS and utility image",
			`{"name": "a", "url": "u", "target": "/"}, {"name": "utils", "url": "u", "target": "/usr/share/utils"}`,
			``, false, 0},
		{"two root images",
			`{"name": "a", "url": "u", "target": "/"}, {"name": "b", "url": "u", "target": "/"}`,
			``, true, DefaultMultibootSize},
		{"two roots and a utility image",
			`{"name": "a", "url": "u", "target": "/"}, {"name": "b", "url": "u", "target": "/"}, {"name": "utils", "url": "u", "target": "/usr/share/utils"}`,
			``, true, DefaultMultibootSize},
		{"multiboot_size",
			`{"name": "a", "url": "u", "target": "/"}, {"name": "b", "url": "u", "target": "/"}`,
			`"multiboot_size": "128 MiB",`, true, 128 << 20},
		// A single image keeping the deploy ramdisk has its grub directory on a multiboot
		// partition, which a reload of the image leaves alone.
		{"one image keeping the ramdisk", `{"name": "a", "url": "u", "target": "/"}`,
			`"ramdisk": {"url": "http://h/ramdisk"},`, true, DefaultMultibootSize},
		{"one image keeping the ramdisk, multiboot_size",
			`{"name": "a", "url": "u", "target": "/"}, {"name": "utils", "url": "u", "target": "/usr/share/utils"}`,
			`"ramdisk": {"url": "http://h/ramdisk"}, "multiboot_size": "160 MiB",`, true, 160 << 20},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var imgs []struct {
				Name   string `json:"name"`
				Target string `json:"target"`
			}
			if err := json.Unmarshal([]byte("["+c.images+"]"), &imgs); err != nil {
				t.Fatal(err)
			}
			var vols []string
			for _, im := range imgs {
				vols = append(vols, `{"type": "partition", "mount": "`+im.Target+`", "file_system": "ext4", "size": "1 GiB", "images": ["`+im.Name+`"]}`)
			}
			doc := `{"images": [` + c.images + `], ` + c.extra + `
			  "partitions": [
			    {"type": "disk", "id": {"type": "name", "value": "sda"}, "size": "8 GiB", "volumes": [` + strings.Join(vols, ",") + `]},
			    {"type": "disk", "id": {"type": "name", "value": "sdb"}, "size": "1 GiB", "volumes": []}]}`
			l := mustPlan(t, doc, nil, "mb")
			sda, sdb := diskByID(t, l, "sda"), diskByID(t, l, "sdb")
			want := []Role{RoleBIOSBoot, RoleESP}
			if c.want {
				want = []Role{RoleBIOSBoot, RoleMultiboot, RoleESP}
			}
			if got := roles(sda)[:len(want)]; !reflect.DeepEqual(got, want) {
				t.Errorf("sda starts with %v, want %v", got, want)
			}
			if got := roles(sdb); !reflect.DeepEqual(got, []Role{RoleBIOSBoot}) {
				t.Errorf("sdb roles %v, want only BIOS boot", got)
			}
			if !c.want {
				if l.Multiboot != nil {
					t.Errorf("multiboot planned: %+v", l.Multiboot)
				}
				return
			}
			p := sda.Partitions[1]
			// BIOS boot is MiB 1..2, so multiboot starts at 4096.
			if p.Number != 2 || p.Name != "multiboot" || p.Type != TypeLinuxFS || p.Start != 4096 || p.SizeBytes != c.size {
				t.Errorf("multiboot partition #%d %q %s at %d, %d bytes", p.Number, p.Name, p.Type, p.Start, p.SizeBytes)
			}
			if p.FS == nil || p.FS != l.Multiboot || p.FS.Type != "ext4" || p.FS.Label != "multiboot" || p.FS.Device != "sda#2" || p.FS.UUID == "" {
				t.Errorf("multiboot filesystem %+v", p.FS)
			}
			if p.FS.FstabEnabled || p.FS.Mount != "" {
				t.Errorf("multiboot is mounted into images: %+v", p.FS)
			}
		})
	}
}
