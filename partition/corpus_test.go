package partition

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/provisioner/provisioner/schema"
)

// bareonDir holds Bareon's own example documents (see its README.md): what Bareon's
// users were told to write, so every one of them must plan.
const bareonDir = "../../shared/bareon-examples"

// fragmentImages is the images list Bareon's conductor supplied for the partitions
// fragments; volumes without "images" belong to its first (only) image.
const fragmentImages = `[{"name": "centos", "url": "http://example.com/centos.tar.gz", "target": "/"}]`

func bareonCorpus(t *testing.T) {
	t.Helper()
	if _, err := os.Stat(bareonDir); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("Bareon corpus missing and CI=true: %v", err)
		}
		t.Skipf("Bareon corpus not found: %v", err)
	}
}

func readCorpus(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(bareonDir, name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// withImages adds an "images" key to a partitions fragment.
func withImages(t *testing.T, fragment, images string) string {
	t.Helper()
	var doc map[string]json.RawMessage
	if err := json.Unmarshal([]byte(fragment), &doc); err != nil {
		t.Fatalf("fragment: %v", err)
	}
	if _, ok := doc["images"]; ok {
		t.Fatalf("fragment already has images")
	}
	doc["images"] = json.RawMessage(images)
	b, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestBareonCorpus(t *testing.T) {
	bareonCorpus(t)
	type want struct {
		// partitions per disk, in the order of the layout's disks
		parts     []int
		multiboot bool
		vgs       int
	}
	cases := []struct {
		file     string
		fragment bool
		want     want
	}{
		// Both: 15000 MB and 10000 MiB disks, two root images, boot mode both: BIOS
		// boot, multiboot, ESP and the two roots.
		{"multiboot-two-images.json", false, want{[]int{5}, true, 0}},
		{"ironic-user-guide-multiboot.json", false, want{[]int{5}, true, 0}},
		// One image: BIOS boot, ESP, then the fragment's volumes.
		{"fragment-no-lvm.json", true, want{[]int{4}, false, 0}},
		{"fragment-partial-lvm.json", true, want{[]int{4}, false, 1}},
		{"fragment-full-lvm.json", true, want{[]int{4}, false, 1}},
	}
	seen := map[string]bool{}
	for _, c := range cases {
		seen[c.file] = true
		t.Run(strings.TrimSuffix(c.file, ".json"), func(t *testing.T) {
			doc := readCorpus(t, c.file)
			if c.fragment {
				doc = withImages(t, doc, fragmentImages)
			}
			// Each document plans on its own disk size.
			l := mustPlan(t, doc, nil, "bareon")
			if len(l.Disks) != len(c.want.parts) {
				t.Fatalf("%d disks, want %d", len(l.Disks), len(c.want.parts))
			}
			for i, d := range l.Disks {
				if len(d.Partitions) != c.want.parts[i] {
					t.Errorf("disk %s: %d partitions (%s), want %d", d.ID, len(d.Partitions), diskSummary(l), c.want.parts[i])
				}
				if err := d.Validate(); err != nil {
					t.Error("Validate:", err)
				}
			}
			var mb *Partition
			for _, p := range l.Disks[0].Partitions {
				if p.Role == RoleMultiboot {
					mb = p
				}
			}
			if (mb != nil) != c.want.multiboot || (l.Multiboot != nil) != c.want.multiboot {
				t.Errorf("multiboot partition %v (layout %v), want present=%v", mb, l.Multiboot, c.want.multiboot)
			}
			if mb != nil && (mb.SizeBytes != DefaultMultibootSize || mb.FS == nil || mb.FS.Type != "ext4") {
				t.Errorf("multiboot partition %+v", mb)
			}
			if len(l.VGs) != c.want.vgs {
				t.Errorf("%d volume groups, want %d", len(l.VGs), c.want.vgs)
			}
			for _, vg := range l.VGs {
				if vg.Extents == 0 || vg.FreeExtents != 0 {
					t.Errorf("vg %s: %d extents, %d free; its \"remaining\" lv should take the rest", vg.Name, vg.Extents, vg.FreeExtents)
				}
			}
			if len(l.Images) == 0 {
				t.Fatal("no images")
			}
			for _, im := range l.Images {
				if im.RootUUID == "" {
					t.Errorf("image %s has no root filesystem UUID", im.Name)
				}
				if len(im.Mounts) == 0 || im.Mounts[0].Path != "/" || im.Mounts[0].FSUUID != im.RootUUID {
					t.Errorf("image %s mounts %+v, want / first", im.Name, im.Mounts)
				}
				if !strings.Contains(im.Fstab, "UUID="+im.RootUUID+" ") {
					t.Errorf("image %s fstab lacks its root:\n%s", im.Name, im.Fstab)
				}
			}
		})
	}

	// Bareon's utility-image example puts a volume at the top level of "partitions",
	// which Bareon's own schema rejects; so does ours, at that entry.
	t.Run("multiboot-utility-image-invalid", func(t *testing.T) {
		seen["multiboot-utility-image-invalid.json"] = true
		_, _, err := schema.Load(strings.NewReader(readCorpus(t, "multiboot-utility-image-invalid.json")))
		var ve *schema.ValidationError
		if !errors.As(err, &ve) {
			t.Fatalf("schema.Load: %v, want a *schema.ValidationError", err)
		}
		for _, p := range ve.Problems {
			if p.Pointer == "/partitions/1" || strings.HasPrefix(p.Pointer, "/partitions/1/") {
				return
			}
		}
		t.Errorf("no problem at /partitions/1: %v", ve.Problems)
	})

	// A document added to the corpus without a case here is a gap in this test.
	files, err := filepath.Glob(filepath.Join(bareonDir, "*.json"))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		if !seen[filepath.Base(f)] {
			t.Errorf("%s is not covered by TestBareonCorpus", f)
		}
	}
}

// TestBareonCorpusSizes pins the layouts of two corpus documents, worked out by hand.
func TestBareonCorpusSizes(t *testing.T) {
	bareonCorpus(t)
	t.Run("fragment-full-lvm", func(t *testing.T) {
		l := mustPlan(t, withImages(t, readCorpus(t, "fragment-full-lvm.json"), fragmentImages), nil, "bareon")
		// 15000 MB = 29296875 sectors; usable to 29296841; partitions in [2048,
		// alignDown(29296842, 2048) = 29296640): 14304 MiB.
		//   1 BIOS boot MiB 1..2; 2 ESP MiB 2..22;
		//   3 /boot 100 MB = 95.37 MiB -> 96, MiB 22..118
		//   4 pv the rest, MiB 118..14305 = 14187 MiB
		checkParts(t, l.Disks[0], []wantPart{
			{1, "BIOS boot", RoleBIOSBoot, 2048, 4095, TypeBIOSBoot},
			{2, "EFI system", RoleESP, 4096, 45055, TypeESP},
			{3, "boot", RoleVolume, 45056, 241663, TypeLinuxFS},
			{4, "pv-volume_group", RolePV, 241664, 29296639, TypeLinuxLVM},
		})
		// (14187 - 1) / 4 = 3546 extents: root 10000 MB = 2384.19 -> 2385, home 4000 MB
		// = 953.67 -> 954, var the remaining 207.
		vg := l.VGs[0]
		got := []uint64{vg.Extents}
		for _, lv := range vg.LVs {
			got = append(got, lv.Extents)
		}
		if want := []uint64{3546, 2385, 954, 207}; !equalU64(got, want) {
			t.Errorf("vg and lv extents %v, want %v", got, want)
		}
		if root := l.Images[0].RootUUID; root != vg.LVs[0].FS.UUID {
			t.Errorf("root uuid %q, want the root lv's", root)
		}
	})
	t.Run("ironic-user-guide-multiboot", func(t *testing.T) {
		l := mustPlan(t, readCorpus(t, "ironic-user-guide-multiboot.json"), nil, "bareon")
		// "10000" is MiB: 20480000 sectors, partitions in MiB 1..9999.
		//   1 BIOS boot MiB 1..2; 2 multiboot MiB 2..102; 3 ESP MiB 102..122;
		//   4 centos 4000 MiB, MiB 122..4122; 5 ubuntu 4000 MiB, MiB 4122..8122
		checkParts(t, l.Disks[0], []wantPart{
			{1, "BIOS boot", RoleBIOSBoot, 2048, 4095, TypeBIOSBoot},
			{2, "multiboot", RoleMultiboot, 4096, 208895, TypeLinuxFS},
			{3, "EFI system", RoleESP, 208896, 249855, TypeESP},
			{4, "centos-root", RoleVolume, 249856, 8441855, TypeLinuxFS},
			{5, "ubuntu-root", RoleVolume, 8441856, 16633855, TypeLinuxFS},
		})
	})
}

func equalU64(a, b []uint64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
