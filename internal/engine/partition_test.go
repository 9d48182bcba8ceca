package engine

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/provisioner/provisioner/internal/disk"
	"github.com/provisioner/provisioner/partition"
	"github.com/provisioner/provisioner/schema"
)

// needLoop skips a loop-device test with the reason when it cannot run here; in CI
// (root, tools installed by make test) it always runs.
func needLoop(t *testing.T, tools ...string) {
	t.Helper()
	if testing.Short() {
		t.Skip("loop-device test skipped in -short mode")
	}
	if os.Geteuid() != 0 {
		t.Skip("loop-device test needs root")
	}
	for _, tool := range append([]string{"sgdisk", "blkid"}, tools...) {
		if _, err := exec.LookPath(tool); err != nil {
			if os.Getenv("CI") == "true" {
				t.Fatalf("%s is missing (make test installs it)", tool)
			}
			t.Skipf("%s is not installed", tool)
		}
	}
}

func loadFile(t *testing.T, path string) *schema.Spec {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	spec, _, err := schema.Load(f)
	if err != nil {
		t.Fatal(err)
	}
	return spec
}

func loadString(t *testing.T, doc string) *schema.Spec {
	t.Helper()
	spec, _, err := schema.Load(strings.NewReader(doc))
	if err != nil {
		t.Fatal(err)
	}
	return spec
}

// hashFile hashes a sparse image by its data extents (SEEK_DATA/SEEK_HOLE): their
// offsets and contents, and the file size. Any write shows: data changes, or a write
// into a hole (even of zeroes) allocates a new extent. Reading only the data keeps a
// 16 GiB sparse image cheap.
func hashFile(t *testing.T, path string) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	const seekData, seekHole = 3, 4
	h := sha256.New()
	fmt.Fprintf(h, "size %d\n", fi.Size())
	for off := int64(0); off < fi.Size(); {
		start, err := f.Seek(off, seekData)
		if err != nil {
			break // ENXIO: no data after off
		}
		end, err := f.Seek(start, seekHole)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(h, "extent %d-%d\n", start, end)
		if _, err := io.Copy(h, io.NewSectionReader(f, start, end-start)); err != nil {
			t.Fatal(err)
		}
		off = end
	}
	return fmt.Sprintf("%x", h.Sum(nil))
}

func sparse(t *testing.T, path string, size int64) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	// A recognisable pattern at both ends, so "unchanged" means something.
	if _, err := f.WriteAt(bytes.Repeat([]byte("old data "), 1000), 0); err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(bytes.Repeat([]byte("old tail "), 1000), size-9000); err != nil {
		t.Fatal(err)
	}
	f.Close()
}

// partitionFiles partitions spec onto image files in dir (created at the spec's disk
// sizes) and returns the layout and the file of each disk.
func partitionFiles(t *testing.T, spec *schema.Spec, dir, seed string, out io.Writer) (*partition.Layout, map[string]string, error) {
	t.Helper()
	opts := PartitionOptions{Seed: seed, Out: out, Events: TextEvents(out), Sizes: map[string]uint64{}, Env: HostEnv(nil)}
	files := map[string]string{}
	for i := range spec.Partitions {
		st := &spec.Partitions[i]
		if st.Type != schema.KindDisk {
			continue
		}
		name := strings.TrimPrefix(st.DiskID.Value, "/dev/")
		files[st.DiskID.Value] = filepath.Join(dir, name+".img")
		opts.Targets = append(opts.Targets, Target{Name: st.DiskID.Value, Path: files[st.DiskID.Value]})
		opts.Sizes[st.DiskID.Value] = st.Size.Q.Bytes
	}
	l, err := Partition(context.Background(), spec, opts)
	return l, files, err
}

var sgdiskRow = strings.NewReplacer("\t", " ")

// sgdiskParts reads "sgdisk -p": partition number -> first and last sector.
func sgdiskParts(t *testing.T, img string) map[int][2]uint64 {
	t.Helper()
	out, err := exec.Command("sgdisk", "-p", img).CombinedOutput()
	if err != nil {
		t.Fatalf("sgdisk -p %s: %v\n%s", img, err, out)
	}
	parts := map[int][2]uint64{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	inTable := false
	for sc.Scan() {
		f := strings.Fields(sgdiskRow.Replace(sc.Text()))
		if len(f) > 0 && f[0] == "Number" {
			inTable = true
			continue
		}
		if !inTable || len(f) < 3 {
			continue
		}
		n, err1 := strconv.Atoi(f[0])
		s, err2 := strconv.ParseUint(f[1], 10, 64)
		e, err3 := strconv.ParseUint(f[2], 10, 64)
		if err1 == nil && err2 == nil && err3 == nil {
			parts[n] = [2]uint64{s, e}
		}
	}
	return parts
}

// attachPlanned attaches img to a loop device and shows the kernel d's partitions; the
// loop device is detached when the test ends.
func attachPlanned(t *testing.T, img string, d *partition.DiskLayout) string {
	t.Helper()
	ctx := context.Background()
	loop, err := disk.AttachLoop(ctx, img, d.SectorSize)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := loop.Detach(ctx); err != nil {
			t.Errorf("detaching %s: %v", loop.Path, err)
		}
	})
	var parts []disk.Part
	for _, p := range d.Partitions {
		parts = append(parts, disk.Part{Number: p.Number, Start: p.Start * d.SectorSize, Size: p.SizeBytes})
	}
	if err := (disk.Sys{}).Reread(ctx, loop.Path, parts); err != nil {
		t.Fatal(err)
	}
	return loop.Path
}

// blkidOf reads what blkid finds on each partition of img (attached for the call):
// partition number -> TYPE, UUID, LABEL.
func blkidOf(t *testing.T, img string, d *partition.DiskLayout) map[int]partition.FSInfo {
	t.Helper()
	var out map[int]partition.FSInfo
	t.Run("blkid", func(t *testing.T) {
		dev := attachPlanned(t, img, d)
		out = map[int]partition.FSInfo{}
		for _, p := range d.Partitions {
			res, err := exec.Command("blkid", "-p", "-o", "export", disk.PartitionPath(dev, p.Number)).Output()
			if err != nil && len(res) == 0 {
				continue // nothing on it (exit 2)
			}
			out[p.Number] = partition.ParseBlkid(res)
		}
	})
	return out
}

// noLoopFor fails when a loop device still points at img.
func noLoopFor(t *testing.T, img string) {
	t.Helper()
	out, _ := exec.Command("losetup", "-j", img).Output()
	if len(bytes.TrimSpace(out)) > 0 {
		t.Errorf("a loop device still points at %s: %s", img, out)
	}
}

// TestPartitionExamples partitions every example the host kernel can hold (no md, no
// device-mapper here) onto image files and reads the result back with sgdisk and blkid.
func TestPartitionExamples(t *testing.T) {
	needLoop(t, "mke2fs", "mkfs.xfs", "mkfs.vfat", "mkswap")
	for _, name := range []string{"multiboot-two-images", "two-disks-shared", "utility-image", "uefi"} {
		t.Run(name, func(t *testing.T) {
			spec := loadFile(t, "../../examples/"+name+".json")
			dir := t.TempDir()
			l, files, err := partitionFiles(t, spec, dir, "loop-"+name, io.Discard)
			if err != nil {
				t.Fatal(err)
			}
			for _, d := range l.Disks {
				img := files[d.ID.Value]
				noLoopFor(t, img)
				out, err := exec.Command("sgdisk", "-v", img).CombinedOutput()
				if err != nil || !strings.Contains(string(out), "No problems found") {
					t.Errorf("sgdisk -v %s: %v\n%s", img, err, out)
				}
				got := sgdiskParts(t, img)
				if len(got) != len(d.Partitions) {
					t.Errorf("%s: sgdisk shows %d partitions, the plan has %d", d.ID, len(got), len(d.Partitions))
				}
				for _, p := range d.Partitions {
					if got[p.Number] != [2]uint64{p.Start, p.End} {
						t.Errorf("%s partition %d: sgdisk %v, plan %d-%d", d.ID, p.Number, got[p.Number], p.Start, p.End)
					}
				}
				fs := blkidOf(t, img, d)
				for _, p := range d.Partitions {
					if p.FS == nil {
						continue
					}
					want := partition.FSInfo{Type: p.FS.Type, UUID: p.FS.UUID, Label: p.FS.Label}
					if fs[p.Number] != want {
						t.Errorf("%s partition %d: blkid %+v, plan %+v", d.ID, p.Number, fs[p.Number], want)
					}
				}
			}
		})
	}
}

func TestPartitionDryRunTouchesNothing(t *testing.T) {
	needLoop(t)
	dir := t.TempDir()
	vda := filepath.Join(dir, "vda.img")
	sparse(t, vda, 16<<30)
	before := hashFile(t, vda)
	vdb := filepath.Join(dir, "vdb.img") // missing: would be created
	spec := loadFile(t, "../../examples/two-disks-shared.json")
	var out bytes.Buffer
	_, err := Partition(context.Background(), spec, PartitionOptions{
		Targets: []Target{{Name: "vda", Path: vda}, {Name: "vdb", Path: vdb}},
		Sizes:   map[string]uint64{"vdb": 8 << 30},
		Seed:    "dry", DryRun: true, Out: &out, Env: HostEnv(nil),
	})
	if err != nil {
		t.Fatal(err)
	}
	if hashFile(t, vda) != before {
		t.Error("--dry-run changed the image")
	}
	if _, err := os.Stat(vdb); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("--dry-run created %s", vdb)
	}
	noLoopFor(t, vda)
	for _, want := range []string{"dry run: 20 steps, nothing written", "would create " + vdb, "run: mkfs.xfs -f -q -m uuid=", "/dev/loopX2"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("dry-run output lacks %q:\n%s", want, out.String())
		}
	}
}

func TestPartitionLayoutErrorWritesNothing(t *testing.T) {
	needLoop(t)
	dir := t.TempDir()
	vda := filepath.Join(dir, "vda.img")
	sparse(t, vda, 2<<30) // the example needs ~11 GiB
	before := hashFile(t, vda)
	spec := loadFile(t, "../../examples/multiboot-two-images.json")
	_, err := Partition(context.Background(), spec, PartitionOptions{Targets: []Target{{Name: "vda", Path: vda}}, Seed: "x", Env: HostEnv(nil)})
	if !errors.Is(err, partition.ErrLayout) {
		t.Fatalf("err = %v, want a layout error", err)
	}
	if hashFile(t, vda) != before {
		t.Error("a layout that does not fit changed the disk")
	}
	noLoopFor(t, vda)
}

// TestPartitionOnlyNamedDisks: a disk the spec does not name keeps its bytes, and a
// --device for a disk the spec lacks is refused before anything is written.
func TestPartitionOnlyNamedDisks(t *testing.T) {
	needLoop(t, "mke2fs", "mkfs.vfat", "mkswap")
	dir := t.TempDir()
	other := filepath.Join(dir, "other.img")
	sparse(t, other, 1<<30)
	vda := filepath.Join(dir, "vda.img")
	sparse(t, vda, 16<<30)
	before, beforeVda := hashFile(t, other), hashFile(t, vda)
	spec := loadFile(t, "../../examples/multiboot-two-images.json")

	_, err := Partition(context.Background(), spec, PartitionOptions{
		Targets: []Target{{Name: "vda", Path: vda}, {Name: "vdb", Path: other}}, Seed: "x", Env: HostEnv(nil)})
	if !errors.Is(err, ErrUsage) || hashFile(t, vda) != beforeVda || hashFile(t, other) != before {
		t.Fatalf("an unknown --device: err = %v, or a disk changed", err)
	}
	if _, err := Partition(context.Background(), spec, PartitionOptions{Targets: []Target{{Name: "vda", Path: vda}}, Seed: "x", Env: HostEnv(nil)}); err != nil {
		t.Fatal(err)
	}
	if hashFile(t, other) != before {
		t.Error("a disk the spec does not name was changed")
	}
	if hashFile(t, vda) == beforeVda {
		t.Error("the named disk was not written")
	}
}

// TestPartitionRefusesBusyDisk mounts a partition of a loop device and asks for that
// device to be partitioned: the answer names the mount, and the table stays as it was.
func TestPartitionRefusesBusyDisk(t *testing.T) {
	needLoop(t, "mke2fs", "mkfs.vfat", "mkswap")
	spec := loadFile(t, "../../examples/multiboot-two-images.json")
	dir := t.TempDir()
	l, files, err := partitionFiles(t, spec, dir, "busy", io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	dev := attachPlanned(t, files["vda"], l.Disks[0])
	mnt := t.TempDir()
	if out, err := exec.Command("mount", disk.PartitionPath(dev, 4), mnt).CombinedOutput(); err != nil {
		t.Fatalf("mount: %v: %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", mnt).CombinedOutput(); err != nil {
			t.Errorf("umount: %v: %s", err, out)
		}
	})
	tableBefore := sgdiskParts(t, files["vda"])
	_, err = Partition(ctx, spec, PartitionOptions{Targets: []Target{{Name: "vda", Path: dev}}, Seed: "other", Env: HostEnv(nil)})
	if !errors.Is(err, ErrEnvironment) || !errors.Is(err, disk.ErrBusy) || !strings.Contains(err.Error(), mnt) {
		t.Fatalf("err = %v, want a busy error naming %s", err, mnt)
	}
	if got := sgdiskParts(t, files["vda"]); fmt.Sprint(got) != fmt.Sprint(tableBefore) {
		t.Errorf("the busy disk's table changed: %v -> %v", tableBefore, got)
	}
}

// verifyDoc is two images on one disk with a data volume; keep is the keep_data value.
func verifyDoc(policy string, keep bool, dataSize string) string {
	return fmt.Sprintf(`{
  "images": [
    {"name": "a", "url": "http://x/a.tar", "target": "/", "boot": true},
    {"name": "b", "url": "http://x/b.tar", "target": "/"}],
  "partitions_policy": %q,
  "partitions": [{"type": "disk", "id": {"type": "name", "value": "vda"}, "size": "4 GiB", "volumes": [
    {"type": "partition", "mount": "/", "file_system": "ext4", "size": "1 GiB", "images": ["a"]},
    {"type": "partition", "mount": "/", "file_system": "ext4", "size": "1 GiB", "images": ["b"]},
    {"type": "partition", "mount": "/data", "file_system": "ext4", "size": %q, "images": ["a", "b"], "keep_data": %v}]}]
}`, policy, dataSize, keep)
}

// TestPartitionVerify deploys a layout with clean, writes a file onto the data volume,
// and runs verify with keep_data: the file survives, the roots are re-created with the
// new plan's UUIDs, and the fstabs carry the kept volume's real UUID. A layout that
// differs fails naming the difference and leaves the disk as it was.
func TestPartitionVerify(t *testing.T) {
	needLoop(t, "mke2fs", "mkfs.vfat")
	dir := t.TempDir()
	first, files, err := partitionFiles(t, loadString(t, verifyDoc("clean", false, "remaining")), dir, "first", io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	img := files["vda"]
	d := first.Disks[0]
	dataNum := len(d.Partitions)
	dataUUID := d.Partitions[dataNum-1].FS.UUID
	withPartition(t, img, d, dataNum, func(t *testing.T, mnt string) {
		if err := os.WriteFile(filepath.Join(mnt, "keep.txt"), []byte("precious\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("mismatch writes nothing", func(t *testing.T) {
		before := hashFile(t, img)
		_, _, err := partitionFiles(t, loadString(t, verifyDoc("verify", true, "512 MiB")), dir, "second", io.Discard)
		if !errors.Is(err, partition.ErrMismatch) || !strings.Contains(err.Error(), "partition 6") {
			t.Fatalf("err = %v, want a mismatch naming partition 6", err)
		}
		if hashFile(t, img) != before {
			t.Error("a failed verify changed the disk")
		}
	})

	for _, policy := range []string{"verify", "nailgun_legacy"} {
		t.Run(policy+" keeps data", func(t *testing.T) {
			seed := "second-" + policy
			spec := loadString(t, verifyDoc(policy, true, "remaining"))
			before := hashFile(t, img)
			var dry, progress bytes.Buffer
			if _, err := Partition(context.Background(), spec, PartitionOptions{Targets: []Target{{Name: "vda", Path: img}}, Seed: seed, DryRun: true, Out: &dry, Env: HostEnv(nil)}); err != nil {
				t.Fatal(err)
			}
			if hashFile(t, img) != before {
				t.Error("the dry run changed the disk")
			}
			noLoopFor(t, img)
			l, _, err := partitionFiles(t, spec, dir, seed, &progress)
			if err != nil {
				t.Fatal(err)
			}
			// The dry run lists every step the run took, bring-up and probes included.
			planned, ran := stepLines(dry.String(), dryStep), stepLines(progress.String(), runStep)
			if !slices.Equal(planned, ran) || !slices.ContainsFunc(ran, func(s string) bool { return strings.HasPrefix(s, "run: blkid -p -o export") }) {
				t.Errorf("the dry run's steps:\n%s\nthe run's:\n%s", strings.Join(planned, "\n"), strings.Join(ran, "\n"))
			}
			got := blkidOf(t, img, l.Disks[0])
			if got[dataNum].UUID != dataUUID {
				t.Errorf("kept volume UUID %s, want the original %s", got[dataNum].UUID, dataUUID)
			}
			for _, p := range l.Disks[0].Partitions {
				if p.FS != nil && !p.FS.KeepData && got[p.Number].UUID != p.FS.UUID {
					t.Errorf("partition %d: blkid UUID %s, want the new plan's %s", p.Number, got[p.Number].UUID, p.FS.UUID)
				}
			}
			for _, im := range l.Images {
				if !strings.Contains(im.Fstab, "UUID="+dataUUID+" /data") {
					t.Errorf("image %s fstab lacks the kept UUID:\n%s", im.Name, im.Fstab)
				}
			}
			withPartition(t, img, l.Disks[0], dataNum, func(t *testing.T, mnt string) {
				b, err := os.ReadFile(filepath.Join(mnt, "keep.txt"))
				if err != nil || string(b) != "precious\n" {
					t.Errorf("kept file: %q, %v", b, err)
				}
			})
		})
	}
}

var (
	dryStep = regexp.MustCompile(`(?m)^  \d+\. (.*)$`)
	runStep = regexp.MustCompile(`(?m)^\[\d+/\d+\] (.*)$`)
	// loopDev matches a loop device or its partition's prefix ("/dev/loop7p"), which a
	// dry run shows as "/dev/loopX".
	loopDev = regexp.MustCompile(`/dev/loop\d+p?`)
)

// stepLines lists the steps of a dry run's listing or a run's progress, loop devices
// shown as a dry run shows them.
func stepLines(out string, re *regexp.Regexp) []string {
	var steps []string
	for _, m := range re.FindAllStringSubmatch(out, -1) {
		steps = append(steps, loopDev.ReplaceAllString(m[1], "/dev/loopX"))
	}
	return steps
}

// withPartition mounts partition n of img for f (in a subtest, whose t f gets), and
// unmounts and detaches after it.
func withPartition(t *testing.T, img string, d *partition.DiskLayout, n int, f func(t *testing.T, mnt string)) {
	t.Helper()
	t.Run(fmt.Sprintf("mount partition %d", n), func(t *testing.T) {
		dev := attachPlanned(t, img, d)
		mnt := t.TempDir()
		if out, err := exec.Command("mount", disk.PartitionPath(dev, n), mnt).CombinedOutput(); err != nil {
			t.Fatalf("mount: %v: %s", err, out)
		}
		defer func() {
			if out, err := exec.Command("umount", mnt).CombinedOutput(); err != nil {
				t.Errorf("umount: %v: %s", err, out)
			}
		}()
		f(t, mnt)
	})
}

// TestPartition4Kn writes a layout onto a loop device with 4096-byte logical sectors:
// the table reads back as planned (in 4096-byte sectors) and every filesystem carries
// its planned identity.
func TestPartition4Kn(t *testing.T) {
	needLoop(t, "mke2fs", "mkfs.xfs", "mkfs.vfat", "mkswap")
	ctx := context.Background()
	img := filepath.Join(t.TempDir(), "4kn.img")
	sparse(t, img, 4<<30)
	loop, err := disk.AttachLoop(ctx, img, 4096)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := loop.Detach(ctx); err != nil {
			t.Errorf("detach: %v", err)
		}
	})
	spec := loadString(t, verifyDoc("clean", false, "remaining"))
	l, err := Partition(ctx, spec, PartitionOptions{Targets: []Target{{Name: "vda", Path: loop.Path}}, Seed: "4kn", Env: HostEnv(nil)})
	if err != nil {
		t.Fatal(err)
	}
	d := l.Disks[0]
	if d.SectorSize != 4096 || d.Alignment != 256 || d.FirstUsable != 6 {
		t.Fatalf("planned as %d-byte sectors, alignment %d, first usable %d", d.SectorSize, d.Alignment, d.FirstUsable)
	}
	got, err := partition.ReadTable(ctx, loop.Path, 4096)
	if err != nil {
		t.Fatal(err)
	}
	if err := partition.CompareTable(d, got); err != nil {
		t.Error(err)
	}
	for _, p := range d.Partitions {
		if p.FS == nil {
			continue
		}
		res, err := exec.Command("blkid", "-p", "-o", "export", disk.PartitionPath(loop.Path, p.Number)).Output()
		if err != nil {
			t.Errorf("blkid partition %d: %v", p.Number, err)
			continue
		}
		if info := partition.ParseBlkid(res); info != (partition.FSInfo{Type: p.FS.Type, UUID: p.FS.UUID, Label: p.FS.Label}) {
			t.Errorf("partition %d: blkid %+v, plan %s %s %s", p.Number, info, p.FS.Type, p.FS.UUID, p.FS.Label)
		}
	}
}
