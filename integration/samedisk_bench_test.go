//go:build integration

package integration

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	kgzip "github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/provisioner/provisioner/internal/timing"
	"github.com/provisioner/provisioner/internal/vmrun"
)

// sameDiskVMSpec puts two utility images on the VM's one disk, each in its own ext4,
// and a small ext4 /shared that image a mounts and, for one at a time, image b too: two
// images sharing a filesystem never deploy at once, so the same ramdisk deploys them one
// after another or side by side, with the same work either way.
const sameDiskVMSpec = `{"images": [{"name": "a", "url": %q, "target": "/a"}, {"name": "b", "url": %q, "target": "/b"}],
 "boot_mode": "bios", "partitions": [{"type": "disk", "id": {"type": "name", "value": "vda"}, "volumes": [
  {"type": "partition", "mount": "/a", "file_system": "ext4", "size": "512 MiB", "images": ["a"]},
  {"type": "partition", "mount": "/b", "file_system": "ext4", "size": "512 MiB", "images": ["b"]},
  {"type": "partition", "mount": "/shared", "file_system": "ext4", "size": "64 MiB", "images": %s}]}]}`

// TestSameDiskVMTiming measures, in the deploy ramdisk under QEMU (TCG, one virtio disk),
// the images phase of two images of tens of MB on one disk, one at a time against two at
// a time, with 1 and 2 virtual CPUs; runs alternate between the settings. It runs only
// when PROVISIONER_BENCH_SAMEDISK_VM is the number of runs per setting:
//
//	PROVISIONER_BENCH_SAMEDISK_VM=3 go test -tags integration ./integration -run TestSameDiskVMTiming -v -timeout 2h
func TestSameDiskVMTiming(t *testing.T) {
	runs, _ := strconv.Atoi(os.Getenv("PROVISIONER_BENCH_SAMEDISK_VM"))
	if runs < 1 {
		t.Skip("set PROVISIONER_BENCH_SAMEDISK_VM to the number of runs per setting")
	}
	needSuite(t)
	raw, n := realFilesTar(t, 48<<20)
	c := newConductor(t)
	for _, format := range []string{"zst", "gz"} {
		blob := compress(t, raw, format)
		t.Logf("tar.%s: %d MB tar (%d files) compressed to %d MB", format, len(raw)/1e6, n, len(blob)/1e6)
		c.Put("a.tar."+format, blob)
		c.Put("b.tar."+format, blob)
		for _, one := range []bool{true, false} {
			shared := `["a"]`
			if one {
				shared = `["a", "b"]`
			}
			c.Put(fmt.Sprintf("samedisk-%s-%t.json", format, one), fmt.Appendf(nil, sameDiskVMSpec, c.GuestURL("a.tar."+format), c.GuestURL("b.tar."+format), shared))
		}
	}
	for _, cpus := range []int{1, 2} {
		for _, format := range []string{"zst", "gz"} {
			times := map[bool][]time.Duration{}
			for i := range runs {
				for _, one := range []bool{true, false} {
					d := vmImagesPhase(t, c, fmt.Sprintf("samedisk-%s-%t.json", format, one), cpus)
					times[one] = append(times[one], d)
					t.Logf("-smp %d tar.%s run %d, one at a time %t: images phase %.1f s", cpus, format, i+1, one, d.Seconds())
				}
			}
			t.Logf("-smp %d, tar.%s, %d runs each: 1 at a time median %.1f s (%s), 2 at a time median %.1f s (%s)",
				cpus, format, runs, timing.Median(times[true]).Seconds(), timing.Seconds(times[true]), timing.Median(times[false]).Seconds(), timing.Seconds(times[false]))
		}
	}
}

// vmImagesPhase boots the ramdisk with cpus virtual CPUs to deploy the spec served as
// name onto a blank disk, and returns the images phase from the succeeded event.
func vmImagesPhase(t *testing.T, c *vmrun.Conductor, name string, cpus int) time.Duration {
	t.Helper()
	before := len(c.Events())
	disk := sparse(t, 2<<30)
	defer os.Remove(disk)
	runVM(t, vmrun.Options{Kernel: ramdisk.Kernel, Initrd: ramdisk.Initramfs, Net: true, Disks: []string{disk}, CPUs: cpus, Timeout: 20 * time.Minute,
		Append: ramdiskArgs(c, "provisioner.spec="+c.GuestURL(name), "provisioner.after=poweroff")})
	ev := c.Events()[before:]
	if len(ev) == 0 || ev[len(ev)-1].Type != "succeeded" || ev[len(ev)-1].Durations == nil {
		t.Fatalf("the deploy did not succeed with durations; events:\n%s", c.EventLog())
	}
	return time.Duration(ev[len(ev)-1].Durations.ImagesMS) * time.Millisecond
}

// realFilesTar is a tar of regular files and directories from /usr/share and /usr/lib,
// in a stable order, until it holds limit bytes of files; it returns the tar and the
// number of files.
func realFilesTar(t *testing.T, limit int64) ([]byte, int) {
	t.Helper()
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	var total int64
	files := 0
	for _, top := range []string{"/usr/share", "/usr/lib"} {
		filepath.WalkDir(top, func(p string, d fs.DirEntry, err error) error {
			if total >= limit {
				return fs.SkipAll
			}
			if err != nil || !(d.IsDir() || d.Type().IsRegular()) {
				return nil
			}
			fi, err := d.Info()
			if err != nil {
				return nil
			}
			data := []byte(nil)
			if fi.Mode().IsRegular() {
				if data, err = os.ReadFile(p); err != nil || int64(len(data)) != fi.Size() {
					return nil
				}
			}
			h, err := tar.FileInfoHeader(fi, "")
			if err != nil {
				return nil
			}
			h.Name = strings.TrimPrefix(p, "/")
			if d.IsDir() {
				h.Name += "/"
			}
			if err := tw.WriteHeader(h); err != nil {
				return err
			}
			if _, err := tw.Write(data); err != nil {
				return err
			}
			total += int64(len(data))
			if !d.IsDir() {
				files++
			}
			return nil
		})
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes(), files
}

// compress returns raw compressed as format ("zst" or "gz").
func compress(t *testing.T, raw []byte, format string) []byte {
	t.Helper()
	var b bytes.Buffer
	var w io.WriteCloser
	var err error
	if format == "zst" {
		w, err = zstd.NewWriter(&b)
	} else {
		w, err = kgzip.NewWriterLevel(&b, kgzip.DefaultCompression)
	}
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(raw); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}
