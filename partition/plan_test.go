package partition

import (
	"encoding/json"
	"errors"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"unicode/utf16"
	"unicode/utf8"

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
		t.Errorf("Validate: %v", err)
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
	// BIOS boot (1 MiB), multiboot (100 MiB) and ESP (256 MiB), in that order.
	//   1 BIOS boot  MiB    1..2     2048 ..    4095
	//   2 multiboot  MiB    2..102   4096 ..  208895
	//   3 ESP        MiB  102..358   208896 .. 733183
	//   4 a root 1 GiB = 1024 MiB:  MiB 358..1382    733184 .. 2830335
	//   5 b root 1000 MB = 953.67 MiB, rounded up to 954: MiB 1382..2336  2830336 .. 4784127
	//   6 swap 512 MiB: MiB 2336..2848   4784128 .. 5832703
	//   7 /srv 204801 s = 100 MiB + 512 B, rounded up to 101 MiB: MiB 2848..2949  5832704 .. 6039551
	checkParts(t, d, []wantPart{
		{1, "BIOS boot", RoleBIOSBoot, 2048, 4095, TypeBIOSBoot},
		{2, "multiboot", RoleMultiboot, 4096, 208895, TypeLinuxFS},
		{3, "EFI system", RoleESP, 208896, 733183, TypeESP},
		{4, "a-root", RoleVolume, 733184, 2830335, TypeLinuxFS},
		{5, "b-root", RoleVolume, 2830336, 4784127, TypeLinuxFS},
		{6, "swap", RoleVolume, 4784128, 5832703, TypeLinuxSwap},
		{7, "a-srv", RoleVolume, 5832704, 6039551, TypeLinuxFS},
	})
	wantBytes := []uint64{1 << 20, 100 << 20, 256 << 20, 1024 << 20, 954 << 20, 512 << 20, 101 << 20}
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
		// 64 MiB of metadata, two copies: data at alignUp(4 KiB + 64 MiB, 1 MiB) = 65 MiB,
		// 64 MiB kept at the end: (1024 - 65 - 64) / 4 = 223.75 -> 223 extents.
		{4, 1024 * MiB, 64 * MiB, 2, 65 * MiB, 223},
		// 1.5 MiB: data at alignUp(4 KiB + 1.5 MiB, 1 MiB) = 2 MiB, 2 MiB kept at the
		// end: (103 - 2 - 2) / 4 = 24.75 -> 24 extents.
		{5, 103 * MiB, 3 * MiB / 2, 2, 2 * MiB, 24},
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
	// 255 + 223 + 24 = 502 extents; 50% is 251, leaving 251 free.
	if vg.ExtentSize != 4*MiB || vg.Extents != 502 || vg.FreeExtents != 251 {
		t.Errorf("vg: extent %d, %d extents, %d free; want 4 MiB, 502, 251", vg.ExtentSize, vg.Extents, vg.FreeExtents)
	}
	if lv := vg.LVs[0]; lv.Extents != 251 || lv.SizeBytes != 251*4*MiB || lv.FS.Device != "/dev/data/srv" {
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
	//   1 ESP 256 MiB, MiB 1..257                      2048 ..   526335
	//   2 /boot 500 MB = 476.84 MiB -> 477, MiB 257..734  526336 ..  1503231
	//   3 pv remaining, MiB 734..8191 = 7457 MiB         1503232 .. 16775167
	checkParts(t, diskByID(t, l, "vda"), []wantPart{
		{1, "EFI system", RoleESP, 2048, 526335, TypeESP},
		{2, "boot", RoleVolume, 526336, 1503231, TypeLinuxFS},
		{3, "pv-os", RolePV, 1503232, 16775167, TypeLinuxLVM},
	})
	if len(l.VGs) != 1 {
		t.Fatalf("%d vgs, want 1", len(l.VGs))
	}
	vg := l.VGs[0]
	if vg.Name != "os" || vg.Source != "/partitions/0" || len(vg.PVs) != 1 || vg.PVs[0].PartRef != (PartRef{"vda", 3}) || vg.PVs[0].Source != "/partitions/1/volumes/1" {
		t.Fatalf("vg %q at %s with pvs %+v", vg.Name, vg.Source, vg.PVs)
	}
	// pv: (7457 MiB - 1 MiB) / 4 MiB = 1864 extents.
	//   root 5 GiB = 1280 extents
	//   var  10% of 1864 = 186.4 -> 186 (rounded down)
	//   tmp  1 MiB -> 1 extent (rounded up)
	//   data 1000 MB = 238.42 extents -> 239 (rounded up)
	//   home remaining = 1864 - 1280 - 186 - 1 - 239 = 158
	if vg.Extents != 1864 || vg.FreeExtents != 0 {
		t.Errorf("vg: %d extents, %d free; want 1864, 0", vg.Extents, vg.FreeExtents)
	}
	want := map[string]uint64{"root": 1280, "var": 186, "tmp": 1, "data": 239, "home": 158}
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
	//   2 ESP 256 MiB,       MiB 2..258        512 ..   66047
	//   3 / 1000 MB -> 954 MiB, MiB 258..1212  66048 ..  310271
	//   5 swap "4097 s" = 4097 x 512 B = 2097664 B = 512.125 sectors of 4 KiB -> 3 MiB,
	//     at the end: MiB 4092..4095     1047552 .. 1048319
	//   4 /var the rest, MiB 1212..4092 = 2880 MiB   310272 .. 1047551
	checkParts(t, d, []wantPart{
		{1, "BIOS boot", RoleBIOSBoot, 256, 511, TypeBIOSBoot},
		{2, "EFI system", RoleESP, 512, 66047, TypeESP},
		{3, "root", RoleVolume, 66048, 310271, TypeLinuxFS},
		{4, "var", RoleVolume, 310272, 1047551, TypeLinuxFS},
		{5, "swap", RoleVolume, 1047552, 1048319, TypeLinuxSwap},
	})
	// Sizes in bytes are what they are on a 512-byte disk.
	for i, want := range []uint64{1 << 20, 256 << 20, 954 << 20, 2880 << 20, 3 << 20} {
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

func TestPlanRAID1(t *testing.T) {
	const doc = `{
	  "images": [{"name": "server", "url": "u", "target": "/"}],
	  "boot_mode": "bios",
	  "partitions": [
	    {"type": "disk", "id": {"type": "name", "value": "sda"}, "size": "16 GiB", "volumes": [
	      {"type": "raid", "mount": "/", "file_system": "ext4", "size": "4 GiB"},
	      {"type": "raid", "mount": "/var", "file_system": "xfs", "size": "remaining"}]},
	    {"type": "disk", "id": {"type": "name", "value": "sdb"}, "size": "12 GiB", "volumes": [
	      {"type": "raid", "mount": "/", "file_system": "ext4", "size": "4 GiB"},
	      {"type": "raid", "mount": "/var", "file_system": "xfs", "size": "remaining"}]}]}`
	l := mustPlan(t, doc, nil, "raid")
	// sda 16 GiB: partitions in MiB 1..16383; BIOS boot 1, / 4096, /var 16382-1-4096 = 12285 MiB.
	// sdb 12 GiB: partitions in MiB 1..12287; /var 12286-1-4096 = 8189 MiB.
	checkParts(t, diskByID(t, l, "sda"), []wantPart{
		{1, "BIOS boot", RoleBIOSBoot, 2048, 4095, TypeBIOSBoot},
		{2, "raid-root", RoleRAID, 4096, 8392703, TypeLinuxRAID},
		{3, "raid-var", RoleRAID, 8392704, 33552383, TypeLinuxRAID},
	})
	checkParts(t, diskByID(t, l, "sdb"), []wantPart{
		{1, "BIOS boot", RoleBIOSBoot, 2048, 4095, TypeBIOSBoot},
		{2, "raid-root", RoleRAID, 4096, 8392703, TypeLinuxRAID},
		{3, "raid-var", RoleRAID, 8392704, 25163775, TypeLinuxRAID},
	})
	if len(l.RAIDs) != 2 {
		t.Fatalf("%d arrays, want 2", len(l.RAIDs))
	}
	want := []struct {
		name, mount, fs string
		members         []PartRef
		bytes           uint64
	}{
		{"md0", "/", "ext4", []PartRef{{"sda", 2}, {"sdb", 2}}, 4096 << 20},
		{"md1", "/var", "xfs", []PartRef{{"sda", 3}, {"sdb", 3}}, 8189 << 20},
	}
	for i, w := range want {
		r := l.RAIDs[i]
		if r.Name != w.name || r.Level != 1 || !reflect.DeepEqual(r.Members, w.members) || r.MemberBytes != w.bytes || r.UUID == "" {
			t.Errorf("array %d: %s level %d members %v %d bytes uuid %q; want %s %v %d", i, r.Name, r.Level, r.Members, r.MemberBytes, r.UUID, w.name, w.members, w.bytes)
		}
		if r.FS == nil || r.FS.Mount != w.mount || r.FS.Type != w.fs || r.FS.Device != "/dev/md/"+w.name {
			t.Errorf("array %s filesystem %+v", w.name, r.FS)
		}
		for _, m := range r.Members {
			if p := diskByID(t, l, m.Disk).Partitions[m.Partition-1]; p.RAID != w.name || p.FS != nil {
				t.Errorf("%s#%d: raid %q, fs %v; want member of %s without its own filesystem", m.Disk, m.Partition, p.RAID, p.FS, w.name)
			}
		}
		if want := []string{"/partitions/0/volumes/" + itoa(i), "/partitions/1/volumes/" + itoa(i)}; !reflect.DeepEqual(r.Sources, want) {
			t.Errorf("array %s sources %q, want %q", w.name, r.Sources, want)
		}
	}
	im := l.Images[0]
	if len(im.Mounts) != 2 || im.Mounts[0] != (Mount{"/", "/dev/md/md0", "ext4", l.RAIDs[0].FS.UUID, "defaults"}) ||
		im.Mounts[1] != (Mount{"/var", "/dev/md/md1", "xfs", l.RAIDs[1].FS.UUID, "defaults"}) {
		t.Errorf("mounts %+v", im.Mounts)
	}
	if im.RootUUID != l.RAIDs[0].FS.UUID {
		t.Errorf("root uuid %q, want md0's %q", im.RootUUID, l.RAIDs[0].FS.UUID)
	}
}

func TestPlanRAIDExplicitName(t *testing.T) {
	// The second array asks for md0, so the first, unnamed, one takes the next free
	// name, md1.
	const doc = `{
	  "images": [{"name": "server", "url": "u", "target": "/"}],
	  "boot_mode": "bios",
	  "partitions": [
	    {"type": "disk", "id": {"type": "name", "value": "sda"}, "size": "8 GiB", "volumes": [
	      {"type": "raid", "mount": "/", "file_system": "ext4", "size": "4 GiB"},
	      {"type": "raid", "mount": "/var", "file_system": "xfs", "size": "remaining", "name": "/dev/md0"}]},
	    {"type": "disk", "id": {"type": "name", "value": "sdb"}, "size": "8 GiB", "volumes": [
	      {"type": "raid", "mount": "/", "file_system": "ext4", "size": "4 GiB"},
	      {"type": "raid", "mount": "/var", "file_system": "xfs", "size": "remaining"}]}]}`
	l := mustPlan(t, doc, nil, "raid")
	var got []string
	for _, r := range l.RAIDs {
		got = append(got, r.Name+"="+r.FS.Mount)
	}
	if want := []string{"md1=/", "md0=/var"}; !reflect.DeepEqual(got, want) {
		t.Errorf("arrays %q, want %q", got, want)
	}
}

// fstabDoc has two images sharing swap and a data volume, a volume that is not in
// fstab, and mounts declared deepest first.
const fstabDoc = `{
  "images": [
    {"name": "alpha", "url": "u", "target": "/", "boot": true},
    {"name": "beta", "url": "u", "target": "/"}
  ],
  "boot_mode": "bios",
  "partitions": [{
    "type": "disk", "id": {"type": "name", "value": "vda"}, "size": "8 GiB",
    "volumes": [
      {"type": "partition", "mount": "/", "file_system": "ext4", "size": "2 GiB", "images": ["alpha"]},
      {"type": "partition", "mount": "/", "file_system": "xfs", "size": "2 GiB", "images": ["beta"]},
      {"type": "partition", "mount": "/var/log", "file_system": "ext4", "size": "512 MiB", "images": ["alpha"]},
      {"type": "partition", "mount": "/var", "file_system": "ext4", "size": "1 GiB", "images": ["alpha"]},
      {"type": "partition", "mount": "swap", "file_system": "swap", "size": "512 MiB", "images": ["alpha", "beta"]},
      {"type": "partition", "mount": "/opt", "file_system": "ext4", "size": "256 MiB", "images": ["alpha"], "fstab_enabled": false},
      {"type": "partition", "mount": "/boot/efi", "file_system": "vfat", "size": "64 MiB", "images": ["alpha"]},
      {"type": "partition", "mount": "/srv/data", "file_system": "ext4", "size": "remaining",
       "images": ["alpha", "beta"], "fstab_options": "defaults,nofail"}
    ]
  }]
}`

func TestPlanImagesMountsAndFstab(t *testing.T) {
	l := mustPlan(t, fstabDoc, nil, "fstab")
	d := l.Disks[0]
	// Two root images, so: 1 BIOS boot, 2 multiboot, 3 alpha /, 4 beta /, 5 /var/log,
	// 6 /var, 7 swap, 8 /opt, 9 /boot/efi, 10 /srv/data.
	uuid := func(n int) string { return d.Partitions[n-1].FS.UUID }
	alpha, beta := imageByName(t, l, "alpha"), imageByName(t, l, "beta")
	if !alpha.Boot || beta.Boot || l.BootImage != "alpha" {
		t.Errorf("boot: alpha %v beta %v layout %q", alpha.Boot, beta.Boot, l.BootImage)
	}
	// Shallowest first, equal depths by path; swap and /opt (fstab_enabled: false) are
	// not mounted for the deploy.
	wantAlpha := []Mount{
		{"/", "vda#3", "ext4", uuid(3), "defaults"},
		{"/var", "vda#6", "ext4", uuid(6), "defaults"},
		{"/boot/efi", "vda#9", "vfat", uuid(9), "defaults"},
		{"/srv/data", "vda#10", "ext4", uuid(10), "defaults,nofail"},
		{"/var/log", "vda#5", "ext4", uuid(5), "defaults"},
	}
	if !reflect.DeepEqual(alpha.Mounts, wantAlpha) {
		t.Errorf("alpha mounts\n got %+v\nwant %+v", alpha.Mounts, wantAlpha)
	}
	wantBeta := []Mount{
		{"/", "vda#4", "xfs", uuid(4), "defaults"},
		{"/srv/data", "vda#10", "ext4", uuid(10), "defaults,nofail"},
	}
	if !reflect.DeepEqual(beta.Mounts, wantBeta) {
		t.Errorf("beta mounts\n got %+v\nwant %+v", beta.Mounts, wantBeta)
	}
	if alpha.RootUUID != uuid(3) || beta.RootUUID != uuid(4) {
		t.Errorf("root uuids %q %q, want %q %q", alpha.RootUUID, beta.RootUUID, uuid(3), uuid(4))
	}
	if !vfatUUID.MatchString(uuid(9)) {
		t.Errorf("vfat uuid %q is not ABCD-1234", uuid(9))
	}
	if got := d.Partitions[8].FS.Label; got != "EFI" {
		t.Errorf("vfat label %q, want EFI (the mount's last element, upper case)", got)
	}
	// Golden fstab of alpha with seed "fstab". Lines follow the mount order, with /opt
	// in its place but commented out and swap last as "none" with pass 0; "/" has pass
	// 1, every other filesystem 2. The literal UUIDs pin their derivation from the
	// seed: changing it would change the fstab of every machine re-planned from a
	// recorded seed.
	const wantFstab = `# /etc/fstab of image "alpha", written by provisioner.
# <file system>                            <mount point> <type> <options>       <dump> <pass>
UUID=084f6c92-1671-5eed-9fe3-909458afa6ff  /             ext4   defaults        0      1
#UUID=e6458920-c1a5-53b4-a229-573980fe5a4b /opt          ext4   defaults        0      2
UUID=f9ff113d-aaf7-5b4d-a747-b14d952b7e95  /var          ext4   defaults        0      2
UUID=B4F4-113D                             /boot/efi     vfat   defaults        0      2
UUID=f9f40a70-02b4-503e-8560-4cb81fb6d24a  /srv/data     ext4   defaults,nofail 0      2
UUID=e37698f4-d3b9-501e-90d9-c33b3ac9c9fa  /var/log      ext4   defaults        0      2
UUID=daebecd2-1be9-554b-970e-5ee035fa9713  none          swap   sw              0      0
`
	if alpha.Fstab != wantFstab {
		t.Errorf("alpha fstab:\n%s\nwant:\n%s", alpha.Fstab, wantFstab)
	}
	for n, want := range map[int]string{3: "084f6c92-1671-5eed-9fe3-909458afa6ff", 8: "e6458920-c1a5-53b4-a229-573980fe5a4b", 9: "B4F4-113D", 7: "daebecd2-1be9-554b-970e-5ee035fa9713"} {
		if uuid(n) != want {
			t.Errorf("partition %d filesystem uuid %q, want %q", n, uuid(n), want)
		}
	}
	const wantBetaFstab = `# /etc/fstab of image "beta", written by provisioner.
# <file system>                           <mount point> <type> <options>       <dump> <pass>
UUID=580684ac-507c-52f1-a407-7f90587422ca /             xfs    defaults        0      1
UUID=f9f40a70-02b4-503e-8560-4cb81fb6d24a /srv/data     ext4   defaults,nofail 0      2
UUID=daebecd2-1be9-554b-970e-5ee035fa9713 none          swap   sw              0      0
`
	if beta.Fstab != wantBetaFstab {
		t.Errorf("beta fstab:\n%s\nwant:\n%s", beta.Fstab, wantBetaFstab)
	}
}

func TestPlanFstabDisabled(t *testing.T) {
	l := mustPlan(t, fstabDoc, nil, "fstab")
	opt := l.Disks[0].Partitions[7].FS
	if opt.Mount != "/opt" || opt.FstabEnabled {
		t.Fatalf("partition 8 filesystem %+v, want /opt with fstab disabled", opt)
	}
	alpha := imageByName(t, l, "alpha")
	for _, m := range alpha.Mounts {
		if m.Path == "/opt" {
			t.Errorf("/opt is mounted for the deploy: %+v", m)
		}
	}
	var optLine string
	for _, line := range strings.Split(alpha.Fstab, "\n") {
		if strings.Contains(line, opt.UUID) {
			optLine = line
		}
	}
	if !strings.HasPrefix(optLine, "#UUID="+opt.UUID+" ") || !strings.Contains(optLine, "/opt") {
		t.Errorf("/opt line %q, want it commented out", optLine)
	}
}

func TestPlanUtilityImage(t *testing.T) {
	const doc = `{
	  "images": [
	    {"name": "centos", "url": "u", "target": "/", "boot": true},
	    {"name": "ubuntu", "url": "u", "target": "/"},
	    {"name": "utils", "url": "u", "target": "/usr/share/utils"}
	  ],
	  "partitions": [{
	    "type": "disk", "id": {"type": "name", "value": "vda"}, "size": "15000 MB",
	    "volumes": [
	      {"type": "partition", "mount": "/", "file_system": "ext4", "size": "5000 MB", "images": ["centos"]},
	      {"type": "partition", "mount": "/", "file_system": "ext4", "size": "5000 MB", "images": ["ubuntu"]},
	      {"type": "partition", "mount": "/usr/share/utils", "file_system": "ext4", "size": "2000",
	       "images": ["centos", "ubuntu", "utils"]},
	      {"type": "partition", "mount": "swap", "file_system": "swap", "size": "1 GiB", "images": ["centos", "ubuntu", "utils"]}
	    ]
	  }]
	}`
	l := mustPlan(t, doc, nil, "utils")
	d := l.Disks[0]
	// 1 BIOS boot, 2 multiboot (two root images), 3 ESP, 4 centos /, 5 ubuntu /,
	// 6 /usr/share/utils, 7 swap.
	if got := roles(d); !reflect.DeepEqual(got, []Role{RoleBIOSBoot, RoleMultiboot, RoleESP, RoleVolume, RoleVolume, RoleVolume, RoleVolume}) {
		t.Fatalf("roles %v", got)
	}
	utilsFS := d.Partitions[5].FS
	utils := imageByName(t, l, "utils")
	if want := []Mount{{"/usr/share/utils", "vda#6", "ext4", utilsFS.UUID, "defaults"}}; !reflect.DeepEqual(utils.Mounts, want) {
		t.Errorf("utils mounts %+v, want %+v", utils.Mounts, want)
	}
	if utils.RootUUID != utilsFS.UUID || utils.Boot || utils.Target != "/usr/share/utils" {
		t.Errorf("utils image %+v", utils)
	}
	if got := mountPaths(imageByName(t, l, "centos")); !reflect.DeepEqual(got, []string{"/", "/usr/share/utils"}) {
		t.Errorf("centos mounts %q", got)
	}
	if got := mountPaths(imageByName(t, l, "ubuntu")); !reflect.DeepEqual(got, []string{"/", "/usr/share/utils"}) {
		t.Errorf("ubuntu mounts %q", got)
	}
}

// allIDs lists every GUID and UUID of a layout, in a stable order.
func allIDs(l *Layout) []string {
	var out []string
	for _, d := range l.Disks {
		out = append(out, d.GUID)
		for _, p := range d.Partitions {
			out = append(out, p.GUID)
		}
	}
	for _, fs := range l.Filesystems() {
		out = append(out, fs.UUID)
	}
	for _, r := range l.RAIDs {
		out = append(out, r.UUID)
	}
	return out
}

// idDoc has something of every kind that gets an id: two disks, implicit partitions,
// raid, lvm, vfat and swap.
const idDoc = `{
  "images": [
    {"name": "a", "url": "u", "target": "/"},
    {"name": "b", "url": "u", "target": "/"}
  ],
  "partitions": [
    {"type": "disk", "id": {"type": "name", "value": "sda"}, "size": "16 GiB", "volumes": [
      {"type": "raid", "mount": "/", "file_system": "ext4", "size": "2 GiB", "images": ["a"]},
      {"type": "partition", "mount": "/", "file_system": "xfs", "size": "2 GiB", "images": ["b"]},
      {"type": "partition", "mount": "/boot/efi", "file_system": "vfat", "size": "64 MiB", "images": ["a"]},
      {"type": "pv", "vg": "vg0", "size": "remaining"}]},
    {"type": "disk", "id": {"type": "name", "value": "sdb"}, "size": "16 GiB", "volumes": [
      {"type": "raid", "mount": "/", "file_system": "ext4", "size": "2 GiB", "images": ["a"]},
      {"type": "partition", "mount": "swap", "file_system": "swap", "size": "1 GiB", "images": ["a", "b"]},
      {"type": "pv", "vg": "vg0", "size": "remaining", "lvm_meta_size": "16 MiB"}]},
    {"type": "vg", "id": "vg0", "volumes": [
      {"type": "lv", "name": "home", "mount": "/home", "file_system": "ext4", "size": "50%", "images": ["a", "b"]},
      {"type": "lv", "name": "scratch", "file_system": "xfs", "size": "remaining", "images": []}]}]}`

func TestPlanDeterminism(t *testing.T) {
	spec := loadSpec(t, idDoc)
	plan := func(seed string) (*Layout, []byte) {
		t.Helper()
		l, err := Plan(spec, nil, seed)
		if err != nil {
			t.Fatalf("Plan: %v", err)
		}
		b, err := json.Marshal(l)
		if err != nil {
			t.Fatal(err)
		}
		return l, b
	}
	l1, j1 := plan("one")
	_, j1again := plan("one")
	if string(j1) != string(j1again) {
		t.Errorf("same seed, different JSON:\n%s\n%s", j1, j1again)
	}
	// A fresh Load of the same document plans the same too.
	if _, j := func() (*Layout, []byte) {
		l := mustPlan(t, idDoc, nil, "one")
		b, _ := json.Marshal(l)
		return l, b
	}(); string(j) != string(j1) {
		t.Errorf("same document and seed, different JSON after a second Load")
	}
	l2, j2 := plan("two")
	if string(j1) == string(j2) {
		t.Fatalf("different seeds, same JSON")
	}
	ids1, ids2 := allIDs(l1), allIDs(l2)
	if len(ids1) != len(ids2) {
		t.Fatalf("%d ids vs %d", len(ids1), len(ids2))
	}
	for i := range ids1 {
		if ids1[i] == ids2[i] {
			t.Errorf("id %d is %s with either seed", i, ids1[i])
		}
	}
	// Apart from the ids, the plans are the same: swap them and compare.
	s := string(j2)
	for i := range ids1 {
		s = strings.ReplaceAll(s, ids2[i], ids1[i])
	}
	s = strings.Replace(s, `"seed":"two"`, `"seed":"one"`, 1)
	if s != string(j1) {
		t.Errorf("the seed changed more than the ids")
	}
}

func TestPlanIDsUnique(t *testing.T) {
	l := mustPlan(t, idDoc, nil, "unique")
	ids := allIDs(l)
	// 2 disk GUIDs + 10 partition GUIDs (sda: BIOS boot, multiboot, ESP, raid, /, vfat,
	// pv; sdb: BIOS boot, raid, swap, pv = 11) + filesystems (multiboot, ESP, b's /,
	// vfat, swap, md0, home, scratch = 8) + 1 array.
	if len(ids) != 2+11+8+1 {
		t.Errorf("%d ids, want 22: %q", len(ids), ids)
	}
	seen := map[string]int{}
	guid := regexp.MustCompile(`^[0-9A-F]{8}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{12}$`)
	uuid := regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)
	for i, id := range ids {
		if j, dup := seen[strings.ToUpper(id)]; dup {
			t.Errorf("id %s used twice (%d and %d)", id, j, i)
		}
		seen[strings.ToUpper(id)] = i
	}
	for _, d := range l.Disks {
		for _, id := range append([]string{d.GUID}, func() (g []string) {
			for _, p := range d.Partitions {
				g = append(g, p.GUID)
			}
			return
		}()...) {
			if !guid.MatchString(id) {
				t.Errorf("GPT GUID %q is not upper-case 8-4-4-4-12", id)
			}
		}
	}
	for _, fs := range l.Filesystems() {
		ok := uuid.MatchString(fs.UUID)
		if fs.Type == "vfat" {
			ok = vfatUUID.MatchString(fs.UUID)
		}
		if !ok {
			t.Errorf("%s filesystem on %s has uuid %q", fs.Type, fs.Device, fs.UUID)
		}
	}
	if len(l.RAIDs) != 1 || !uuid.MatchString(l.RAIDs[0].UUID) {
		t.Errorf("arrays %+v", l.RAIDs)
	}
}

func TestPlanPartitionNames(t *testing.T) {
	long := strings.Repeat("x", 40)
	emoji := strings.Repeat("\U0001F600", 20) // 20 runes, 40 UTF-16 code units
	doc := `{"images": [{"name": "os", "url": "u", "target": "/"}], "boot_mode": "bios",
	  "partitions": [{"type": "disk", "id": {"type": "name", "value": "vda"}, "size": "1 GiB",
	    "volumes": [
	      {"type": "partition", "mount": "/", "file_system": "ext4", "size": "100 MiB"},
	      {"type": "partition", "mount": "/` + long + `", "file_system": "ext4", "size": "100 MiB"},
	      {"type": "partition", "mount": "/` + emoji + `", "file_system": "ext4", "size": "100 MiB"},
	      {"type": "partition", "mount": "/a` + strings.Repeat("é", 9) + `", "file_system": "ext4", "size": "100 MiB"}]}]}`
	l := mustPlan(t, doc, nil, "names")
	d := l.Disks[0]
	if got := d.Partitions[2].Name; got != long[:36] {
		t.Errorf("long name %q, want it cut to 36 characters", got)
	}
	// GPT stores 36 UTF-16 code units: 18 of these characters, not 36.
	if got := d.Partitions[3].Name; got != strings.Repeat("\U0001F600", 18) {
		t.Errorf("name %q (%d UTF-16 units), want 18 emoji", got, len(utf16.Encode([]rune(got))))
	}
	// ext4 labels are at most 16 bytes; a cut must not split a character.
	if got := d.Partitions[4].FS.Label; !utf8.ValidString(got) || len(got) > 16 || got != "a"+strings.Repeat("é", 7) {
		t.Errorf("label %q (%d bytes), want %q", got, len(got), "a"+strings.Repeat("é", 7))
	}
}

func TestValidate(t *testing.T) {
	// A 1 GiB disk of 512-byte sectors: usable 34..2097118, alignment 2048.
	base := func() *DiskLayout {
		return &DiskLayout{
			ID:          schema.DiskID{Type: "name", Value: "vda"},
			Disk:        Disk{SizeBytes: 1 << 30, SectorSize: 512},
			Sectors:     2097152,
			FirstUsable: 34,
			LastUsable:  2097118,
			Alignment:   2048,
			Partitions: []*Partition{
				{Number: 1, Name: "one", Start: 2048, End: 4095, Type: TypeLinuxFS, GUID: "G1"},
				{Number: 2, Name: "two", Start: 4096, End: 2095103, Type: TypeLinuxFS, GUID: "G2"},
			},
		}
	}
	cases := []struct {
		name   string
		change func(d *DiskLayout)
		err    string // "" = valid
	}{
		{"valid", func(d *DiskLayout) {}, ""},
		{"ends on the last usable sector", func(d *DiskLayout) { d.Partitions[1].End = 2097118 }, ""},
		{"name of 36 characters", func(d *DiskLayout) { d.Partitions[0].Name = strings.Repeat("é", 36) }, ""},
		{"overlap", func(d *DiskLayout) { d.Partitions[0].End = 4096 }, "overlap"},
		{"same start", func(d *DiskLayout) { d.Partitions[1].Start = 2048 }, "overlap"},
		{"overlap out of number order", func(d *DiskLayout) {
			d.Partitions[0].Start, d.Partitions[0].End = 8192, 10239
		}, "overlap"},
		{"misaligned start", func(d *DiskLayout) { d.Partitions[1].Start = 4097 }, "not a multiple of 2048"},
		{"before the first usable sector", func(d *DiskLayout) { d.Partitions[0].Start = 0 }, "outside the usable sectors"},
		{"past the last usable sector", func(d *DiskLayout) { d.Partitions[1].End = 2097119 }, "outside the usable sectors"},
		{"duplicate number", func(d *DiskLayout) { d.Partitions[1].Number = 1 }, "used twice"},
		{"number 0", func(d *DiskLayout) { d.Partitions[0].Number = 0 }, "outside 1..128"},
		{"number 129", func(d *DiskLayout) { d.Partitions[1].Number = 129 }, "outside 1..128"},
		{"name over 36 characters", func(d *DiskLayout) { d.Partitions[0].Name = strings.Repeat("n", 37) }, "longer than 36"},
		{"name over 36 UTF-16 code units", func(d *DiskLayout) { d.Partitions[0].Name = strings.Repeat("\U0001F600", 19) }, "longer than 36"},
		{"ends before it starts", func(d *DiskLayout) { d.Partitions[0].End = 2047 }, "before it starts"},
		{"no type", func(d *DiskLayout) { d.Partitions[0].Type = "" }, "no type or GUID"},
		{"no GUID", func(d *DiskLayout) { d.Partitions[1].GUID = "" }, "no type or GUID"},
		{"no alignment", func(d *DiskLayout) { d.Alignment = 0 }, "alignment and sector size"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			d := base()
			c.change(d)
			err := d.Validate()
			switch {
			case c.err == "" && err != nil:
				t.Errorf("Validate: %v, want nil", err)
			case c.err != "" && err == nil:
				t.Errorf("Validate accepted the table, want an error containing %q", c.err)
			case c.err != "" && !strings.Contains(err.Error(), c.err):
				t.Errorf("Validate: %v, want an error containing %q", err, c.err)
			}
		})
	}
}

func TestPlanImplicitSizesRoundUp(t *testing.T) {
	// Sizes of the partitions the planner adds round up to whole MiB like any other
	// fixed size, even when they overshoot a MiB by less than a sector.
	const doc = `{
	  "images": [{"name": "a", "url": "u", "target": "/"}, {"name": "b", "url": "u", "target": "/"}],
	  "boot_mode": "uefi",
	  "esp_size": "34603009 B",
	  "multiboot_size": "33554433 B",
	  "partitions": [{"type": "disk", "id": {"type": "name", "value": "vda"}, "size": "4 GiB", "volumes": [
	    {"type": "partition", "mount": "/", "file_system": "ext4", "size": "1 GiB", "images": ["a"]},
	    {"type": "partition", "mount": "/", "file_system": "ext4", "size": "1 GiB", "images": ["b"]}]}]}`
	l := mustPlan(t, doc, nil, "implicit")
	// multiboot 32 MiB + 1 B -> 33 MiB, MiB 1..34:     2048 ..   69631
	// ESP 33 MiB + 1 B -> 34 MiB, MiB 34..68:          69632 ..  139263
	// a 1 GiB, MiB 68..1092;  b 1 GiB, MiB 1092..2116
	checkParts(t, l.Disks[0], []wantPart{
		{1, "multiboot", RoleMultiboot, 2048, 69631, TypeLinuxFS},
		{2, "EFI system", RoleESP, 69632, 139263, TypeESP},
		{3, "a-root", RoleVolume, 139264, 2236415, TypeLinuxFS},
		{4, "b-root", RoleVolume, 2236416, 4333567, TypeLinuxFS},
	})
}

func TestPlanLVPercentExact(t *testing.T) {
	const doc = `{
	  "images": [{"name": "os", "url": "u", "target": "/"}],
	  "boot_mode": "bios",
	  "partitions": [
	    {"type": "disk", "id": {"type": "name", "value": "vda"}, "size": "4 GiB", "volumes": [
	      {"type": "partition", "mount": "/", "file_system": "ext4", "size": "1 GiB"},
	      {"type": "pv", "vg": "vg0", "size": "1501 MiB"}]},
	    {"type": "vg", "id": "vg0", "volumes": [
	      {"type": "lv", "name": "a", "mount": "/a", "file_system": "ext4", "size": "18.4%"},
	      {"type": "lv", "name": "b", "mount": "/b", "file_system": "ext4", "size": "33.3%"}]}]}`
	l := mustPlan(t, doc, nil, "lvpct")
	vg := l.VGs[0]
	// (1501 - 1) / 4 = 375 extents. 18.4% of 375 is exactly 69; 33.3% is 124.875 -> 124.
	if vg.Extents != 375 || vg.LVs[0].Extents != 69 || vg.LVs[1].Extents != 124 || vg.FreeExtents != 375-69-124 {
		t.Errorf("vg %d extents, lvs %d and %d, %d free; want 375, 69, 124, 182", vg.Extents, vg.LVs[0].Extents, vg.LVs[1].Extents, vg.FreeExtents)
	}
}

// TestPercentOf checks the exact percentage arithmetic the planner relies on for disk
// sectors and lv extents.
func TestPercentOf(t *testing.T) {
	cases := []struct {
		n    uint64
		pct  float64
		want uint64
	}{
		{1000 * secPerMiB, 32.3, 323 * secPerMiB},
		{1000 * secPerMiB, 12.34, 252723}, // 252723.2
		{375, 18.4, 69},
		{7, 50, 3},
		{4095, 100, 4095},
		{100, 0.5, 0},
		{10_000_000, 0.00001, 1},
		{1 << 50, 12.5, 1 << 47},
	}
	for _, c := range cases {
		if got := (schema.Quantity{Kind: schema.Percent, Pct: c.pct}).PercentOf(c.n); got != c.want {
			t.Errorf("%g%% of %d = %d, want %d", c.pct, c.n, got, c.want)
		}
	}
}
