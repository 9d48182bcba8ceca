package partition

import (
	"encoding/json"
	"regexp"
	"strings"
	"testing"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/provisioner/provisioner/schema"
)

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
				t.Error("Validate (want nil):", err)
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
