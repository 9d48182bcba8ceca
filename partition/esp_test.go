package partition

import (
	"fmt"
	"slices"
	"strings"
	"testing"
)

// bareonFitDocs have no boot_mode (Bareon's documents have none, so both firmware
// types) and volumes that leave exactly what Bareon added on a 3 GiB (3072 MiB) disk:
// 24 MiB, and with two images also its 100 MiB multiboot partition.
var bareonFitDocs = map[string]string{
	// 3072 - 24 = 3048 MiB of volumes.
	"single-image": `{
	  "images": [{"name": "os", "url": "http://h/os.tar.gz", "target": "/"}],
	  "partitions": [{"type": "disk", "id": {"type": "name", "value": "vda"}, "size": "3072",
	    "volumes": [
	      {"type": "partition", "mount": "/", "file_system": "ext4", "size": "2900"},
	      {"type": "partition", "mount": "swap", "file_system": "swap", "size": "148"}]}]}`,
	// 3072 - 24 - 100 = 2948 MiB of volumes.
	"two-images": `{
	  "images": [{"name": "first", "url": "http://h/first.tar.gz", "target": "/"},
	             {"name": "second", "url": "http://h/second.tar.gz", "target": "/"}],
	  "partitions": [{"type": "disk", "id": {"type": "name", "value": "vda"}, "size": "3072",
	    "volumes": [
	      {"type": "partition", "mount": "/", "file_system": "ext4", "size": "1474", "images": ["first"]},
	      {"type": "partition", "mount": "/", "file_system": "ext4", "size": "1474", "images": ["second"]}]}]}`,
}

// TestPlanFitsWhereBareonFits plans documents that fill their disk as Bareon filled it:
// the partitions the planner adds (BIOS boot, multiboot, a 20 MiB FAT16 ESP) and the
// GPT take no more than Bareon did, so both firmware types still boot.
func TestPlanFitsWhereBareonFits(t *testing.T) {
	const MiB = 1 << 20
	for _, sector := range []uint64{512, 4096} {
		for name, doc := range bareonFitDocs {
			t.Run(fmt.Sprintf("%s/%d", name, sector), func(t *testing.T) {
				l := mustPlan(t, doc, map[string]Disk{"vda": {SizeBytes: 3072 * MiB, SectorSize: sector}}, "bareon-fit")
				d := l.Disks[0]
				if d.SizeBytes != 3072*MiB {
					t.Fatalf("disk of %d bytes, want 3072 MiB", d.SizeBytes)
				}
				var esp *Partition
				var added, used uint64
				for _, p := range d.Partitions {
					used += p.SizeBytes
					if p.Role != RoleVolume {
						added += p.SizeBytes
					}
					if p.Role == RoleESP {
						esp = p
					}
				}
				if esp == nil || l.ESP == nil || esp.FS != l.ESP {
					t.Fatalf("no ESP planned: %+v", d.Partitions)
				}
				if esp.SizeBytes != DefaultESPSize || DefaultESPSize != 20*MiB {
					t.Errorf("ESP of %d bytes, want %d (20 MiB)", esp.SizeBytes, DefaultESPSize)
				}
				if fs := esp.FS; fs.Type != "vfat" || !slices.Equal(fs.MkfsOptions, []string{"-F", "16", "-s", "1"}) {
					t.Errorf("ESP filesystem %s %q, want vfat -F 16 -s 1", fs.Type, fs.MkfsOptions)
				}
				// BIOS boot 1 MiB + ESP 20 MiB (+ multiboot 100 MiB), and 2 MiB for the GPT
				// and alignment at both ends: 23 MiB, 1 MiB within Bareon's 24 (+ 100).
				if l.Multiboot != nil {
					added -= DefaultMultibootSize
				}
				if added != 21*MiB || d.SizeBytes-used != 3*MiB {
					t.Errorf("the planner adds %d MiB besides multiboot and leaves %d MiB unpartitioned; want 21 and 3 (the GPT and 1 MiB)", added/MiB, (d.SizeBytes-used)/MiB)
				}
				if l.BootMode != "both" {
					t.Errorf("boot mode %q, want both", l.BootMode)
				}
			})
		}
	}
}

// TestESPSizedKeepsFAT32 checks that esp_size keeps its size and FAT32.
func TestESPSizedKeepsFAT32(t *testing.T) {
	doc := strings.Replace(bareonFitDocs["single-image"], `"partitions"`, `"esp_size": "256 MiB", "partitions"`, 1)
	doc = strings.Replace(doc, `"size": "3072"`, `"size": "4096"`, 1)
	l := mustPlan(t, doc, nil, "esp-sized")
	for _, p := range l.Disks[0].Partitions {
		if p.Role == RoleESP {
			if p.SizeBytes != 256<<20 || !slices.Equal(p.FS.MkfsOptions, []string{"-F", "32"}) {
				t.Errorf("ESP of %d bytes, mkfs %q; want 256 MiB, -F 32", p.SizeBytes, p.FS.MkfsOptions)
			}
			return
		}
	}
	t.Fatal("no ESP planned")
}

// TestSmallESPMkfsFAT16 checks the mkfs step of the default ESP.
func TestSmallESPMkfsFAT16(t *testing.T) {
	l := mustPlan(t, bareonFitDocs["two-images"], nil, "esp-mkfs")
	actions, err := CleanActions(l, Devices{"vda": "/dev/vda"})
	if err != nil {
		t.Fatal(err)
	}
	want := "mkfs.vfat -i " + strings.ReplaceAll(l.ESP.UUID, "-", "") + " -n ESP -F 16 -s 1 /dev/vda3"
	for _, a := range actions {
		if strings.Join(a.Argv, " ") == want {
			return
		}
	}
	var got []string
	for _, a := range actions {
		got = append(got, strings.Join(a.Argv, " "))
	}
	t.Errorf("no %q among:\n%s", want, strings.Join(got, "\n"))
}
