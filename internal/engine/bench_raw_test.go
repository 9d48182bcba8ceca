package engine

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/provisioner/provisioner/internal/disk"
)

// rawBenchTools are the programs the raw benchmark runs besides the provisioner: the
// alternatives (dd, bmaptool, and curl and zstd feeding dd), mke2fs and tar to make the
// image, e2fsck to check what each side wrote.
var rawBenchTools = []string{"curl", "zstd", "dd", "bmaptool", "mke2fs", "e2fsck", "tar"}

// rawBenchSpec deploys a raw ext4 image onto one partition exactly the image's size (in
// MiB), so that every side writes the same number of bytes onto the same layout.
const rawBenchSpec = `{"images": [{"name": "bench", "url": %q, "target": "/srv", "format": %q}], "boot_mode": "bios",
 "partitions": [{"type": "disk", "id": {"type": "name", "value": "vda"}, "volumes": [
  {"type": "partition", "mount": "/srv", "file_system": "ext4", "size": "%dMiB", "images": ["bench"]}]}]}`

// rawBenchImage is the full benchmark's image: a 2 GiB ext4 holding about 400 MB of
// files, mostly empty as real filesystem images are.
const (
	rawBenchImageBytes = 2 << 30
	rawBenchTarBytes   = 400 << 20
)

// BenchmarkRawVsDdAndBmaptool compares `provisioner deploy` of a raw ext4 image served
// over HTTP on loopback, plain (raw) and zstd-compressed (raw.zst), with what a user would
// otherwise run onto the same partition of an identically partitioned disk: curl URL | dd
// bs=4M conv=fsync (with zstd -dc between them for raw.zst), and bmaptool copy with the
// image's block map, which writes only the blocks the filesystem uses. Every side starts
// from a new disk-image file on a loop device and is timed from partitioning to its
// last write synced; the deploy also checks the filesystem, gives it the plan's UUID and
// grows it (a no-op: the partition is the image's size), then mounts and unmounts it. It
// reports MB/s of image (its full size, zeros included), the ratios and the peak RSS of
// every side. Untimed, each written filesystem passes e2fsck -fn and its tree equals the
// tar the image was filled from. TestRawVsDdAndBmaptoolShort runs one round on a tiny image.
func BenchmarkRawVsDdAndBmaptool(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Skip("needs root (loop devices, mounts)")
	}
	for _, tool := range rawBenchTools {
		if _, err := exec.LookPath(tool); err != nil {
			b.Skipf("%s is not installed (make bench installs it)", tool)
		}
	}
	e := setupRawBench(b, benchCache(b), rawBenchImageBytes, rawBenchTarBytes, rawBenchTarBytes)
	for _, format := range []string{"raw", "raw.zst"} {
		b.Run(format, func(b *testing.B) {
			for b.Loop() {
				r := e.round(b, format)
				for _, alt := range r.alts {
					b.ReportMetric(float64(e.imgSize)/1e6/alt.d.Seconds(), alt.metric+"-MB/s")
					b.ReportMetric(alt.d.Seconds()/r.ours.Seconds(), "ratio-"+alt.metric)
					b.ReportMetric(float64(alt.rss)/(1<<20), alt.metric+"-peak-MiB")
					recordBench(benchRow{op: "deploy, " + format, alt: alt.name, bytes: e.imgSize,
						ours: r.ours, other: alt.d, oursRSS: r.rss, otherRSS: alt.rss})
				}
				b.ReportMetric(float64(e.imgSize)/1e6/r.ours.Seconds(), "ours-MB/s")
				b.ReportMetric(float64(r.rss)/(1<<20), "ours-peak-MiB")
				b.Log(e.summary(format, r))
			}
		})
	}
}

// TestRawVsDdAndBmaptoolShort is the raw benchmark's short mode, so that make test keeps
// it working: one round of raw.zst with a 64 MiB image holding about 8 MiB of files. It
// checks that every side completes, that every written filesystem is clean and equals
// the tar, and that the figures are sane, never how fast a side is.
func TestRawVsDdAndBmaptoolShort(t *testing.T) {
	needLoop(t, rawBenchTools...)
	e := setupRawBench(t, t.TempDir(), 64<<20, 8<<20, 1<<20)
	r := e.round(t, "raw.zst")
	t.Log(e.summary("raw.zst", r))
	for _, d := range append([]time.Duration{r.ours}, r.alts[0].d, r.alts[1].d) {
		if d <= 0 {
			t.Errorf("a side took %v", d)
		}
	}
	for _, rss := range []int64{r.rss, r.alts[0].rss, r.alts[1].rss} {
		if rss <= 0 {
			t.Errorf("a peak RSS is %d, want a positive number", rss)
		}
	}
}

// rawBenchEnv is what every raw round uses: the tar the image was filled from, the image,
// its block map, the server of the image and its raw.zst copy, the provisioner binary and
// a spec per format.
type rawBenchEnv struct {
	tarPath  string
	imgSize  int64
	bmap     string
	urls     map[string]string // by format: "raw", "raw.zst"
	specs    map[string]string // by format
	bin      string
	work     string
	diskSize string // of each disk-image file: the partition and the GPT around it
}

// setupRawBench builds (or finds) in dir a tar of at most tarBytes of files, an ext4
// image of imgBytes filled with it, its raw.zst copy and block map, serves them on
// loopback until the test ends, builds the provisioner and writes the specs.
func setupRawBench(tb testing.TB, dir string, imgBytes, tarBytes, minBytes int64) *rawBenchEnv {
	tarPath, _ := benchTarball(tb, filepath.Join(dir, "raw.tar"), tarBytes, minBytes)
	img := filepath.Join(dir, fmt.Sprintf("raw-%dMiB.img", imgBytes>>20))
	rawImageOnce(tb, tarPath, img, imgBytes)
	compressOnce(tb, img, "zst", img+".zst")
	e := &rawBenchEnv{tarPath: tarPath, imgSize: imgBytes, bmap: img + ".bmap", urls: map[string]string{}, specs: map[string]string{},
		bin: buildProvisioner(tb), work: tb.TempDir(), diskSize: fmt.Sprintf("%dMiB", imgBytes>>20+4)}
	bmapOnce(tb, img, e.bmap)
	srv := httptest.NewServer(http.FileServer(http.Dir(dir)))
	tb.Cleanup(srv.Close)
	for format, name := range map[string]string{"raw": filepath.Base(img), "raw.zst": filepath.Base(img) + ".zst"} {
		e.urls[format] = srv.URL + "/" + name
		e.specs[format] = filepath.Join(e.work, "raw-"+format+".json")
		if err := os.WriteFile(e.specs[format], fmt.Appendf(nil, rawBenchSpec, e.urls[format], format, imgBytes>>20), 0o644); err != nil {
			tb.Fatal(err)
		}
	}
	return e
}

// rawImageOnce makes img, unless it is already newer than the tar: a file of size bytes
// with an ext4 (mke2fs's defaults) into which the tar is extracted through a loop device.
func rawImageOnce(tb testing.TB, tarPath, img string, size int64) {
	tfi, err := os.Stat(tarPath)
	if err != nil {
		tb.Fatal(err)
	}
	if fi, err := os.Stat(img); err == nil && fi.Size() == size && !fi.ModTime().Before(tfi.ModTime()) {
		return
	}
	tmp := img + ".tmp"
	os.Remove(tmp)
	f, err := os.Create(tmp)
	if err == nil {
		err = f.Truncate(size)
		f.Close()
	}
	if err != nil {
		tb.Fatal(err)
	}
	runTool(tb, "mke2fs", "-q", "-F", "-t", "ext4", tmp)
	ctx := context.Background()
	loop, err := disk.AttachLoop(ctx, tmp, 512)
	if err != nil {
		tb.Fatal(err)
	}
	mnt, unmount := mountDev(tb, loop.Path, true)
	runTool(tb, "tar", "-x", "-f", tarPath, "-C", mnt)
	unmount()
	if err := loop.Detach(ctx); err != nil {
		tb.Fatal(err)
	}
	if err := os.Rename(tmp, img); err != nil {
		tb.Fatal(err)
	}
}

// bmapOnce writes the block map of img with bmaptool create, unless bmap is already
// newer than img.
func bmapOnce(tb testing.TB, img, bmap string) {
	ifi, err := os.Stat(img)
	if err != nil {
		tb.Fatal(err)
	}
	if fi, err := os.Stat(bmap); err == nil && !fi.ModTime().Before(ifi.ModTime()) {
		return
	}
	runTool(tb, "bmaptool", "-q", "create", "-o", bmap+".tmp", img)
	if err := os.Rename(bmap+".tmp", bmap); err != nil {
		tb.Fatal(err)
	}
}

func runTool(tb testing.TB, argv ...string) {
	tb.Helper()
	if out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput(); err != nil {
		tb.Fatalf("%s: %v\n%s", strings.Join(argv, " "), err, out)
	}
}

// rawAlt is one alternative's outcome in a raw round.
type rawAlt struct {
	name, metric string // the command line as a user would type it; the metric's prefix
	d            time.Duration
	rss          int64 // bytes: dd's pipeline, the sum of its processes' peaks; bmaptool, its own (or its zstd child's, if larger)
}

// rawRound is one raw round's outcome: ours, then dd's and bmaptool's.
type rawRound struct {
	ours time.Duration
	rss  int64
	alts []rawAlt
}

// round deploys the image with provisioner, then writes it with dd and with bmaptool,
// each onto a new disk-image file, checking each written filesystem once its clock has
// stopped.
func (e *rawBenchEnv) round(tb testing.TB, format string) rawRound {
	var r rawRound
	img := filepath.Join(e.work, "raw.img")
	r.ours, r.rss = timeOurs(tb, e.bin, e.specs[format], img, e.diskSize)
	e.verify(tb, img, "provisioner deploy")
	ddName := "curl | dd bs=4M conv=fsync"
	if format == "raw.zst" {
		ddName = "curl | zstd -dc | dd bs=4M conv=fsync"
	}
	bmapName := "bmaptool copy --bmap"
	for _, alt := range []rawAlt{{name: ddName, metric: "dd"}, {name: bmapName, metric: "bmaptool"}} {
		alt.d, alt.rss = e.timeAlt(tb, format, alt.metric, img)
		e.verify(tb, img, alt.name)
		r.alts = append(r.alts, alt)
	}
	os.Remove(img)
	return r
}

// timeAlt partitions a new disk-image file with provisioner partition (the same table
// as ours), attaches it and writes the image onto its partition with dd or bmaptool
// (which), and returns the time until that program exits (both sync the device) and the
// peak RSS. The detach is left out, as in the deploy benchmark's pipeline.
func (e *rawBenchEnv) timeAlt(tb testing.TB, format, which, img string) (time.Duration, int64) {
	os.Remove(img)
	start := time.Now()
	if out, err := exec.Command(e.bin, "partition", e.specs[format], "--device", "vda="+img, "--size", "vda="+e.diskSize, "--seed", "bench").CombinedOutput(); err != nil {
		tb.Fatalf("provisioner partition: %v\n%s", err, out)
	}
	loop, tbl, detach := attachImage(tb, img, true)
	defer detach()
	dev := disk.PartitionPath(loop, tbl[len(tbl)-1].Number)
	var stages []*exec.Cmd
	if which == "bmaptool" {
		// The block map is a small file a user downloads next to the image.
		stages = append(stages, exec.Command("bmaptool", "-q", "copy", "--bmap", e.bmap, e.urls[format], dev))
	} else {
		// --noproxy: a proxy from the environment must not carry loopback traffic.
		stages = append(stages, exec.Command("curl", "-sSf", "--noproxy", "*", e.urls[format]))
		if format == "raw.zst" {
			stages = append(stages, exec.Command("zstd", "-dc"))
		}
		stages = append(stages, exec.Command("dd", "of="+dev, "bs=4M", "conv=fsync", "status=none"))
	}
	rss := runStages(tb, stages)
	return time.Since(start), rss
}

// runStages runs the commands joined by pipes (no shell), waits for all and returns the
// sum of their peak RSS.
func runStages(tb testing.TB, stages []*exec.Cmd) int64 {
	for i, c := range stages {
		c.Stderr = os.Stderr
		// bmaptool reads URLs with Python's urllib, which honours no_proxy.
		c.Env = append(os.Environ(), "no_proxy=*", "NO_PROXY=*")
		if i > 0 {
			p, err := stages[i-1].StdoutPipe()
			if err != nil {
				tb.Fatal(err)
			}
			c.Stdin = p
		}
	}
	for _, c := range stages {
		if err := c.Start(); err != nil {
			tb.Fatal(err)
		}
	}
	var errs []string
	var rss int64
	for _, c := range stages {
		if err := c.Wait(); err != nil {
			errs = append(errs, fmt.Sprintf("%s: %v", strings.Join(c.Args, " "), err))
		}
		if c.ProcessState != nil {
			rss += peakRSS(c.ProcessState)
		}
	}
	if len(errs) > 0 {
		tb.Fatal(strings.Join(errs, "; "))
	}
	return rss
}

// verify checks the filesystem on the disk-image file img that who wrote: e2fsck -fn
// finds nothing to fix, and its tree equals the tar the image was filled from.
func (e *rawBenchEnv) verify(tb testing.TB, img, who string) {
	tb.Helper()
	loop, tbl, detach := attachImage(tb, img, false)
	dev := disk.PartitionPath(loop, tbl[len(tbl)-1].Number)
	if out, err := exec.Command("e2fsck", "-f", "-n", dev).CombinedOutput(); err != nil {
		tb.Fatalf("%s: e2fsck -fn of the written filesystem: %v\n%s", who, err, out)
	}
	detach()
	if n := verifyImage(tb, img, 0, e.tarPath, who); n == 0 {
		tb.Fatalf("%s: the tar has no entries", who)
	}
}

func (e *rawBenchEnv) summary(format string, r rawRound) string {
	s := fmt.Sprintf("%s, %d MiB ext4 image: provisioner %.1f s = %.0f MB/s (peak RSS %.0f MiB)",
		format, e.imgSize>>20, r.ours.Seconds(), float64(e.imgSize)/1e6/r.ours.Seconds(), float64(r.rss)/(1<<20))
	for _, a := range r.alts {
		s += fmt.Sprintf("; %s %.1f s = %.0f MB/s (peak RSS %.0f MiB), ratio %.2f",
			a.name, a.d.Seconds(), float64(e.imgSize)/1e6/a.d.Seconds(), float64(a.rss)/(1<<20), a.d.Seconds()/r.ours.Seconds())
	}
	return s + "; every written filesystem is clean (e2fsck -fn) and equals the tar"
}
