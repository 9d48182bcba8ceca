package engine

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/provisioner/provisioner/internal/disk"
	"github.com/provisioner/provisioner/partition"
	"github.com/provisioner/provisioner/schema"
	"golang.org/x/sys/unix"
)

// reloadBenchTools are the programs the reload benchmark runs: the pipeline's, and
// grub-install (with udevadm) for the deploy of two OS images that sets the disk up.
var reloadBenchTools = append(slices.Clone(benchTools), "grub-install", "udevadm")

// reloadBenchSpec is the node the reload benchmark sets up: two OS images on ext4 roots,
// both deployed from a small image. small stays the default; bench is reloaded, and its
// root takes the rest of the disk so that the >= 1 GiB tree fits.
const reloadBenchSpec = `{"images": [
  {"name": "small", "url": %[1]q, "target": "/", "boot": true},
  {"name": "bench", "url": %[1]q, "target": "/"}],
 "boot_mode": "bios",
 "partitions": [{"type": "disk", "id": {"type": "name", "value": "vda"}, "volumes": [
  {"type": "partition", "mount": "/", "file_system": "ext4", "size": "64 MiB", "images": ["small"]},
  {"type": "partition", "mount": "/", "file_system": "ext4", "size": "remaining", "images": ["bench"]}]}]}`

// BenchmarkReloadVsPipeline compares `provisioner reload` of one root of a deployed disk
// image from a >= 1 GiB tar.zst served over HTTP on loopback with what a user would do by
// hand to the same partition of the same disk: attach the disk and its partitions, make
// the filesystem anew with the reload's own mke2fs command line (same UUID and options),
// mount it, curl URL | zstd -dc | tar -x into it, unmount. Both sides include the mkfs and
// the final unmount; the reload also reads its plan record, checks the source before
// writing and commits the menu and boot-info.json. It reports MB/s of uncompressed tar for
// both, their ratio and the peak RSS of both sides; each side's tree is then
// compared with the tar, outside the timed part. Run it with -benchtime 1x (make bench).
// TestReloadVsPipelineShort runs the same round on a small tree.
func BenchmarkReloadVsPipeline(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Skip("needs root (loop devices, mounts)")
	}
	for _, tool := range reloadBenchTools {
		if _, err := exec.LookPath(tool); err != nil {
			b.Skipf("%s is not installed (make bench installs it)", tool)
		}
	}
	e := setupReloadBench(b, benchCache(b), benchTarBytes, benchTarBytes, 4<<30)
	b.Run("tar.zst", func(b *testing.B) {
		for b.Loop() {
			r := e.round(b)
			mbOurs, mbPipe := r.rates(e.tarSize)
			b.ReportMetric(mbOurs, "ours-MB/s")
			b.ReportMetric(mbPipe, "pipeline-MB/s")
			b.ReportMetric(mbOurs/mbPipe, "ratio")
			b.ReportMetric(float64(r.rss)/(1<<20), "ours-peak-MiB")
			b.ReportMetric(float64(r.pipeRSS)/(1<<20), "pipeline-peak-MiB")
			b.Log(e.summary(r))
			recordBench(benchRow{op: "reload, tar.zst", alt: "mke2fs, " + pipelineName("zst"), bytes: e.tarSize,
				ours: r.ours, other: r.pipe, oursRSS: r.rss, otherRSS: r.pipeRSS})
		}
	})
}

// TestReloadVsPipelineShort is the reload benchmark's short mode, so that make test keeps
// it working: one round on a tree of about 32 MiB. It checks that both sides complete,
// that both trees equal the tar and that the figures are sane, never how fast either side
// is.
func TestReloadVsPipelineShort(t *testing.T) {
	needLoop(t, reloadBenchTools...)
	e := setupReloadBench(t, t.TempDir(), 32<<20, 1<<20, 1<<30)
	r := e.round(t)
	t.Log(e.summary(r))
	checkFigures(t, r, e.tarSize)
}

// reloadBenchEnv is what every reload round uses.
type reloadBenchEnv struct {
	tarPath string // the tree with a kernel, as a tar
	tarSize int64
	url     string   // tarPath as tar.zst on loopback
	bin     string   // the provisioner built for the test
	img     string   // the deployed disk image both sides write
	rootNum int      // the partition of bench's root
	mkfs    []string // the reload's mke2fs command line for that root, without the device
	tmp     string   // private mount roots of the setup's deploy
}

// setupReloadBench builds (or finds) the tree in dir with a kernel added, serves it and a
// small root image on loopback, builds the provisioner and deploys the two-image disk of
// diskSize bytes.
func setupReloadBench(tb testing.TB, dir string, tarBytes, minBytes int64, diskSize uint64) *reloadBenchEnv {
	src, _ := benchTarball(tb, filepath.Join(dir, "rootfs.tar"), tarBytes, minBytes)
	tarPath := filepath.Join(dir, "reload.tar")
	withKernel(tb, src, tarPath)
	compressOnce(tb, tarPath, "zst", tarPath+".zst")
	fi, err := os.Stat(tarPath)
	if err != nil {
		tb.Fatal(err)
	}
	served := tb.TempDir()
	if err := os.Symlink(tarPath+".zst", filepath.Join(served, "reload.tar.zst")); err != nil {
		tb.Fatal(err)
	}
	writeSmallRoot(tb, filepath.Join(served, "small.tar.zst"))
	srv := httptest.NewServer(http.FileServer(http.Dir(served)))
	tb.Cleanup(srv.Close)
	e := &reloadBenchEnv{tarPath: tarPath, tarSize: fi.Size(), url: srv.URL + "/reload.tar.zst",
		bin: buildProvisioner(tb), img: filepath.Join(tb.TempDir(), "disk.img"), tmp: tb.TempDir()}
	e.deploy(tb, srv.URL+"/small.tar.zst", diskSize)
	return e
}

// deploy deploys reloadBenchSpec onto a new image file and learns, from the reload's plan
// of the deployed layout, the partition of bench's root and the mke2fs command line that
// re-creates it.
func (e *reloadBenchEnv) deploy(tb testing.TB, url string, size uint64) {
	spec, _, err := schema.Load(strings.NewReader(fmt.Sprintf(reloadBenchSpec, url)))
	if err != nil {
		tb.Fatal(err)
	}
	res, err := Deploy(context.Background(), spec, DeployOptions{
		PartitionOptions: PartitionOptions{
			Targets: []Target{{Name: "vda", Path: e.img}}, Sizes: map[string]uint64{"vda": size},
			Seed: "bench-reload", Env: HostEnv(nil),
		},
		TmpDir: e.tmp,
		Boot:   BootOptions{Prober: ProberBuiltin},
	})
	if err != nil {
		tb.Fatalf("deploying the disk to reload: %v", err)
	}
	plan, err := partition.PlanReload(res.Layout, "bench")
	if err != nil {
		tb.Fatal(err)
	}
	if len(plan.Recreate) != 1 || plan.Recreate[0].Mount != "/" {
		tb.Fatalf("the reload of bench would re-create %v, want its root alone", plan.Recreate)
	}
	for _, p := range res.Layout.Disks[0].Partitions {
		if p.FS != nil && p.FS.UUID == plan.Recreate[0].UUID {
			e.rootNum = p.Number
		}
	}
	// The device's name is only known once the pipeline side attaches the disk: the
	// command line is taken on a stand-in and its last argument, the device, dropped.
	const standIn = "/dev/loop-bench"
	actions, err := partition.PolicyOf(plan.Layout).Actions(partition.Devices{"vda": standIn})
	if err != nil {
		tb.Fatal(err)
	}
	for _, a := range actions {
		if len(a.Argv) > 0 && a.Argv[0] == "mke2fs" {
			if e.mkfs != nil || a.Argv[len(a.Argv)-1] != disk.PartitionPath(standIn, e.rootNum) {
				tb.Fatalf("the reload's mkfs steps: %v, want one, on partition %d", actions, e.rootNum)
			}
			e.mkfs = a.Argv[:len(a.Argv)-1]
		}
	}
	if e.mkfs == nil {
		tb.Fatalf("the reload of bench makes no ext4: %v", actions)
	}
}

// round reloads bench with provisioner, then does the same by hand, each time checking the
// tree against the tar once the clock has stopped. Both sides start with nothing of the
// disk image left to write back (sync, untimed).
func (e *reloadBenchEnv) round(tb testing.TB) benchRound {
	r := benchRound{format: "zst"}
	unix.Sync()
	r.ours, r.rss = e.timeReload(tb)
	r.entries = verifyImage(tb, e.img, e.rootNum, e.tarPath, "provisioner reload")
	unix.Sync()
	r.pipe, r.pipeRSS = e.timePipeline(tb)
	verifyImage(tb, e.img, e.rootNum, e.tarPath, "the pipeline")
	return r
}

// timeReload runs provisioner reload offline on the disk image and returns the wall time
// and the process's peak RSS in bytes.
func (e *reloadBenchEnv) timeReload(tb testing.TB) (time.Duration, int64) {
	cmd := exec.Command(e.bin, "reload", "bench", "--url", e.url, "--device", e.img, "--no-trial", "--prober", "builtin")
	start := time.Now()
	if out, err := cmd.CombinedOutput(); err != nil {
		tb.Fatalf("provisioner reload: %v\n%s", err, out)
	}
	elapsed := time.Since(start)
	ru := cmd.ProcessState.SysUsage().(*syscall.Rusage)
	return elapsed, ru.Maxrss * 1024
}

// timePipeline attaches the disk image and its partitions, makes bench's root anew with
// the reload's mke2fs command line, mounts it, runs curl | zstd -dc | tar -x into it and
// unmounts; the detach is left out, as in the deploy benchmark's pipeline. It returns the
// time and the sum of the pipeline's processes' peak RSS.
func (e *reloadBenchEnv) timePipeline(tb testing.TB) (time.Duration, int64) {
	start := time.Now()
	loop, _, detach := attachImage(tb, e.img, true)
	dev := disk.PartitionPath(loop, e.rootNum)
	argv := append(slices.Clone(e.mkfs), dev)
	if out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput(); err != nil {
		tb.Fatalf("%s: %v\n%s", strings.Join(argv, " "), err, out)
	}
	mnt, unmount := mountDev(tb, dev, true)
	rss := pipeInto(tb, e.url, "zst", mnt)
	unmount()
	elapsed := time.Since(start)
	detach()
	return elapsed, rss
}

func (e *reloadBenchEnv) summary(r benchRound) string {
	mbOurs, mbPipe := r.rates(e.tarSize)
	return fmt.Sprintf("reload of one root, tar.zst, %d MB tar: provisioner reload %.1f s = %.0f MB/s (peak RSS %.0f MiB); mke2fs, curl | zstd -dc | tar -x %.1f s = %.0f MB/s (peak RSS %.0f MiB); ratio %.2f; both trees equal the tar (%d entries)",
		e.tarSize/1e6, r.ours.Seconds(), mbOurs, float64(r.rss)/(1<<20), r.pipe.Seconds(), mbPipe, float64(r.pipeRSS)/(1<<20), mbOurs/mbPipe, r.entries)
}

// benchKernelTime is the mtime of the fake boot files.
var benchKernelTime = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// writeBootFiles adds /boot with a kernel and its initrd of version: what an image at
// target / needs for the builtin prober. They are not a real kernel: nothing boots them.
func writeBootFiles(tw *tar.Writer, version string) error {
	if err := tw.WriteHeader(&tar.Header{Name: "boot/", Typeflag: tar.TypeDir, Mode: 0o755, ModTime: benchKernelTime}); err != nil {
		return err
	}
	for _, name := range []string{"vmlinuz-", "initrd.img-"} {
		body := []byte("not a kernel: the reload benchmark's stand-in for " + name + version + "\n")
		h := &tar.Header{Name: "boot/" + name + version, Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(body)), ModTime: benchKernelTime}
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		if _, err := tw.Write(body); err != nil {
			return err
		}
	}
	return nil
}

// withKernel writes, unless dst is already newer than src, the tar src with the boot
// files of writeBootFiles first.
func withKernel(tb testing.TB, src, dst string) {
	sfi, err := os.Stat(src)
	if err != nil {
		tb.Fatal(err)
	}
	if fi, err := os.Stat(dst); err == nil && !fi.ModTime().Before(sfi.ModTime()) {
		return
	}
	in, err := os.Open(src)
	if err != nil {
		tb.Fatal(err)
	}
	defer in.Close()
	out, err := os.Create(dst + ".tmp")
	if err != nil {
		tb.Fatal(err)
	}
	defer out.Close()
	tw := tar.NewWriter(out)
	err = writeBootFiles(tw, "6.1.0-0-bench")
	for tr := tar.NewReader(in); err == nil; {
		var h *tar.Header
		if h, err = tr.Next(); err == io.EOF {
			err = nil
			break
		}
		if err == nil {
			err = tw.WriteHeader(h)
		}
		if err == nil {
			_, err = io.Copy(tw, tr)
		}
	}
	if err := errors.Join(err, tw.Close(), out.Close()); err != nil {
		tb.Fatalf("adding a kernel to %s: %v", src, err)
	}
	if err := os.Rename(dst+".tmp", dst); err != nil {
		tb.Fatal(err)
	}
}

// writeSmallRoot writes the image both roots are first deployed from, as tar.zst: an
// os-release and the boot files.
func writeSmallRoot(tb testing.TB, path string) {
	f, err := os.Create(path)
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	zw, err := zstd.NewWriter(f)
	if err != nil {
		tb.Fatal(err)
	}
	tw := tar.NewWriter(zw)
	release := []byte("PRETTY_NAME=\"small\"\n")
	err = tw.WriteHeader(&tar.Header{Name: "etc/", Typeflag: tar.TypeDir, Mode: 0o755, ModTime: benchKernelTime})
	if err == nil {
		err = tw.WriteHeader(&tar.Header{Name: "etc/os-release", Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(release)), ModTime: benchKernelTime})
	}
	if err == nil {
		_, err = tw.Write(release)
	}
	if err == nil {
		err = writeBootFiles(tw, "6.1.0-0-small")
	}
	if err := errors.Join(err, tw.Close(), zw.Close(), f.Close()); err != nil {
		tb.Fatalf("writing %s: %v", path, err)
	}
}
