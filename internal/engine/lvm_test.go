package engine

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/provisioner/provisioner/internal/disk"
	"github.com/provisioner/provisioner/partition"
)

// lvmMetaDoc puts pvs with and without lvm_meta_size (sizes that are and are not
// multiples of the 1 MiB alignment and of the 4 MiB extent) in one vg.
const lvmMetaDoc = `{
  "images": [{"name": "os", "url": "http://x/os.tar.gz", "target": "/"}],
  "boot_mode": "bios",
  "partitions": [
    {"type": "disk", "id": {"type": "name", "value": "vda"}, "size": "4 GiB", "volumes": [
      {"type": "partition", "mount": "/", "file_system": "ext4", "size": "1 GiB"},
      {"type": "pv", "vg": "lvmcheck", "size": "1 GiB"},
      {"type": "pv", "vg": "lvmcheck", "size": "1 GiB", "lvm_meta_size": "64"},
      {"type": "pv", "vg": "lvmcheck", "size": "103 MiB", "lvm_meta_size": "1.5 MiB"},
      {"type": "pv", "vg": "lvmcheck", "size": "261 MiB", "lvm_meta_size": "16 MiB"}]},
    {"type": "vg", "id": "lvmcheck", "volumes": [
      {"type": "lv", "name": "srv", "mount": "/srv", "file_system": "xfs", "size": "50%"}]}]}`

// TestPVExtentsMatchLVM runs the planned pvcreate and vgcreate on loop devices of the
// planned pv sizes and reads back where lvm2 put the first extent and how many extents
// each pv has: the plan sizes logical volumes by extent count, so it must agree exactly.
// pvcreate and vgcreate only write metadata; creating logical volumes would need
// device-mapper, which the loop-device tests do not assume.
func TestPVExtentsMatchLVM(t *testing.T) {
	needLoop(t, "lvm")
	ctx := context.Background()
	l, err := partition.Plan(loadString(t, lvmMetaDoc), map[string]partition.Disk{"vda": {SizeBytes: 4 << 30, SectorSize: 512}}, "lvm")
	if err != nil {
		t.Fatal(err)
	}
	const dev = "/dev/vda"
	actions, err := partition.CleanActions(l, partition.Devices{"vda": dev})
	if err != nil {
		t.Fatal(err)
	}
	vg := l.VGs[0]
	loops := map[string]string{} // planned node -> loop device
	var loopList []string
	dir := t.TempDir()
	for _, pv := range vg.PVs {
		img := filepath.Join(dir, "pv"+strconv.Itoa(pv.Partition)+".img")
		if err := os.WriteFile(img, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Truncate(img, int64(pv.SizeBytes)); err != nil {
			t.Fatal(err)
		}
		loop, err := disk.AttachLoop(ctx, img, 512)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if err := loop.Detach(ctx); err != nil {
				t.Errorf("detaching %s: %v", loop.Path, err)
			}
		})
		loops[disk.PartitionPath(dev, pv.Partition)] = loop.Path
		loopList = append(loopList, loop.Path)
	}
	// Runs before the detaches (cleanups run last first).
	t.Cleanup(func() {
		lvmRun(t, false, "vgremove", "-f", vg.Name)
		lvmRun(t, false, append([]string{"pvremove", "-ff", "-y"}, loopList...)...)
	})
	for _, a := range actions {
		if len(a.Argv) < 2 || a.Argv[0] != "lvm" || (a.Argv[1] != "pvcreate" && a.Argv[1] != "vgcreate") {
			continue
		}
		argv := slices.Clone(a.Argv[1:])
		for i, arg := range argv {
			if p, ok := loops[arg]; ok {
				argv[i] = p
			}
		}
		lvmRun(t, true, argv...)
	}
	for _, pv := range vg.PVs {
		loop := loops[disk.PartitionPath(dev, pv.Partition)]
		out := lvmRun(t, true, "pvs", "--noheadings", "--nosuffix", "--units", "b", "-o", "pe_start,pv_pe_count", loop)
		f := strings.Fields(out)
		if len(f) != 2 {
			t.Fatalf("pvs %s: %q", loop, out)
		}
		start, err1 := strconv.ParseUint(f[0], 10, 64)
		count, err2 := strconv.ParseUint(f[1], 10, 64)
		if err1 != nil || err2 != nil {
			t.Fatalf("pvs %s: %q", loop, out)
		}
		if start != pv.DataStart || count != pv.Extents {
			t.Errorf("pv %d (%d bytes, metadata %d): lvm2 puts the first extent at %d with %d extents; the plan says %d with %d",
				pv.Partition, pv.SizeBytes, pv.MetadataBytes, start, count, pv.DataStart, pv.Extents)
		}
	}
}

// lvmRun runs lvm with args and returns its standard output; a failure fails the test
// when must is set and is only logged otherwise (cleanup).
func lvmRun(t *testing.T, must bool, args ...string) string {
	t.Helper()
	cmd := exec.Command("lvm", args...)
	cmd.Env = append(os.Environ(), "LVM_SUPPRESS_FD_WARNINGS=1")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		if must {
			t.Fatalf("lvm %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
		}
		t.Logf("lvm %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return string(out)
}
