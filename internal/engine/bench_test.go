package engine

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	kgzip "github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/provisioner/provisioner/internal/disk"
	"github.com/provisioner/provisioner/partition"
	"golang.org/x/sys/unix"
)

// benchTarBytes is the size of the benchmark's rootfs: at least 1 GiB of real files.
const benchTarBytes = 1100 << 20

// benchTools are the programs the shell pipeline side runs (mke2fs for the partitioning
// both sides share).
var benchTools = []string{"curl", "zstd", "gzip", "xz", "bzip2", "tar", "mke2fs"}

// benchDecompressor is the command line a user's pipeline decompresses each format with:
// xz with as many threads as cores, which decodes the multi-block files xz -T0 writes in
// parallel.
var benchDecompressor = map[string][]string{
	"zst": {"zstd", "-dc"},
	"gz":  {"gzip", "-dc"},
	"xz":  {"xz", "-dc", "-T0"},
	"bz2": {"bzip2", "-dc"},
}

// benchCompressor is the command line each format's copy of the tar is made with, the
// tool's default level (xz multi-threaded, so multi-block as current distributions' images
// are); zst and gz are written in Go (compressOnce).
var benchCompressor = map[string][]string{
	"xz":  {"xz", "-c", "-T0"},
	"bz2": {"bzip2", "-c"},
}

// benchSpec is the deployed layout: one ext4 volume, mounted at /srv and bound to the
// image, whose target is /srv. The tree is a tar of /usr, not an OS: it has no kernel,
// and an image at target / must have one, because a deploy of OS images ends with the
// bootloader (grub-install alone takes seconds). Deployed as a utility image it goes
// through the same mount, fetch, decompress, extract and unmount as a root image, and
// the deploy installs no bootloader, so both sides do the same work: partitioning, the
// download and extraction onto the volume's filesystem root, the final unmount.
const benchSpec = `{"images": [{"name": "bench", "url": %q, "target": "/srv"}], "boot_mode": "bios",
 "partitions": [{"type": "disk", "id": {"type": "name", "value": "vda"}, "volumes": [
  {"type": "partition", "mount": "/srv", "file_system": "ext4", "size": "remaining", "images": ["bench"]}]}]}`

// BenchmarkDeployVsPipeline compares `provisioner deploy` of a >= 1 GiB rootfs served
// over HTTP on loopback (tar.zst, tar.gz, tar.xz and tar.bz2) with the shell pipeline a
// user would write (curl URL | zstd -dc | tar -x, likewise gzip -dc, xz -dc -T0 and
// bzip2 -dc), each onto a freshly partitioned
// ext4 on a loop device. Both sides include partitioning and the final unmount (which
// flushes what tar left in the page cache). It reports MB/s of uncompressed tar for both,
// their ratio, and the peak RSS of both sides (benchRound.rss, pipeRSS); each side's tree is then
// compared with the tar, outside the timed part. Run it with -benchtime 1x (make bench):
// one deploy is ~1 GiB of writes. TestDeployVsPipelineShort runs the same rounds on a
// small tree.
func BenchmarkDeployVsPipeline(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Skip("needs root (loop devices, mounts)")
	}
	for _, tool := range benchTools {
		if _, err := exec.LookPath(tool); err != nil {
			b.Skipf("%s is not installed (make bench installs it)", tool)
		}
	}
	e := setupBench(b, benchConfig{dir: benchCache(b), tarBytes: benchTarBytes, minBytes: benchTarBytes, disk: "3GiB", formats: []string{"zst", "gz", "xz", "bz2"}})
	for _, format := range e.formats {
		b.Run("tar."+format, func(b *testing.B) {
			for b.Loop() {
				r := e.round(b, format)
				mbOurs, mbPipe := r.rates(e.tarSize)
				b.ReportMetric(mbOurs, "ours-MB/s")
				b.ReportMetric(mbPipe, "pipeline-MB/s")
				b.ReportMetric(mbOurs/mbPipe, "ratio")
				b.ReportMetric(float64(r.rss)/(1<<20), "ours-peak-MiB")
				b.ReportMetric(float64(r.pipeRSS)/(1<<20), "pipeline-peak-MiB")
				b.Log(r.summary(e.tarSize))
				recordBench(benchRow{op: "deploy, tar." + format, alt: pipelineName(format), bytes: e.tarSize,
					ours: r.ours, other: r.pipe, oursRSS: r.rss, otherRSS: r.pipeRSS})
			}
		})
	}
}

// TestDeployVsPipelineShort is the benchmark's short mode, so that make test keeps it
// working: one round of tar.zst on a tree of about 32 MiB. It checks that both sides
// complete, that both trees equal the tar, and that the figures are sane, never how fast
// either side is.
func TestDeployVsPipelineShort(t *testing.T) {
	needLoop(t, benchTools...)
	e := setupBench(t, benchConfig{dir: t.TempDir(), tarBytes: 32 << 20, minBytes: 1 << 20, disk: "512MiB", formats: []string{"zst"}})
	r := e.round(t, "zst")
	t.Log(r.summary(e.tarSize))
	checkFigures(t, r, e.tarSize)
}

// checkFigures fails t when a round checked no entries or a figure is not a positive
// finite number; it never judges the speed.
func checkFigures(t *testing.T, r benchRound, tarSize int64) {
	t.Helper()
	if r.entries == 0 {
		t.Error("the tar has no entries")
	}
	mbOurs, mbPipe := r.rates(tarSize)
	for _, f := range []struct {
		name string
		v    float64
	}{{"provisioner MB/s", mbOurs}, {"pipeline MB/s", mbPipe}, {"ratio", mbOurs / mbPipe}, {"peak RSS", float64(r.rss)}} {
		if !(f.v > 0) || math.IsInf(f.v, 0) {
			t.Errorf("%s is %v, want a positive finite number", f.name, f.v)
		}
	}
}

// benchConfig sizes one benchmark setup.
type benchConfig struct {
	dir      string   // holds the tar, its compressed copies and nothing else served
	tarBytes int64    // the tree takes files from /usr until it holds this many bytes
	minBytes int64    // fewer bytes of files than this skips the run
	disk     string   // size of each disk-image file
	formats  []string // "zst", "gz", "xz", "bz2"
}

// benchEnv is what every round uses: the tar, the server of its compressed copies, the
// provisioner binary and a spec per format.
type benchEnv struct {
	tarPath string
	tarSize int64
	formats []string
	urls    map[string]string // by format
	specs   map[string]string // by format
	bin     string
	work    string
	disk    string
}

// setupBench builds (or finds) the tar and its compressed copies, serves them on
// loopback until the test ends, builds the provisioner and writes the specs.
func setupBench(tb testing.TB, cfg benchConfig) *benchEnv {
	tarPath, tarSize := benchTarball(tb, filepath.Join(cfg.dir, "rootfs.tar"), cfg.tarBytes, cfg.minBytes)
	srv := httptest.NewServer(http.FileServer(http.Dir(cfg.dir)))
	tb.Cleanup(srv.Close)
	e := &benchEnv{tarPath: tarPath, tarSize: tarSize, formats: cfg.formats, urls: map[string]string{}, specs: map[string]string{},
		bin: buildProvisioner(tb), work: tb.TempDir(), disk: cfg.disk}
	for _, format := range cfg.formats {
		blob := tarPath + "." + format
		compressOnce(tb, tarPath, format, blob)
		e.urls[format] = srv.URL + "/" + filepath.Base(blob)
		e.specs[format] = filepath.Join(e.work, "bench-"+format+".json")
		if err := os.WriteFile(e.specs[format], fmt.Appendf(nil, benchSpec, e.urls[format]), 0o644); err != nil {
			tb.Fatal(err)
		}
	}
	return e
}

// benchRound is one comparison's outcome.
type benchRound struct {
	format     string
	ours, pipe time.Duration
	rss        int64 // peak RSS of the provisioner process (or of a program it ran, if larger), bytes
	pipeRSS    int64 // the sum of the peak RSS of the pipeline's processes, bytes
	entries    int   // tar entries each tree was checked against
}

// round deploys the tree with provisioner, then with the shell pipeline, each onto a new
// image file, and checks both trees against the tar once the clock has stopped.
func (e *benchEnv) round(tb testing.TB, format string) benchRound {
	r := benchRound{format: format}
	ours := filepath.Join(e.work, "ours.img")
	r.ours, r.rss = timeOurs(tb, e.bin, e.specs[format], ours, e.disk)
	r.entries = verifyImage(tb, ours, 0, e.tarPath, "provisioner deploy")
	os.Remove(ours)
	pipe := filepath.Join(e.work, "pipe.img")
	r.pipe, r.pipeRSS = timePipeline(tb, e.bin, e.specs[format], pipe, e.disk, e.urls[format], format)
	verifyImage(tb, pipe, 0, e.tarPath, "the pipeline")
	os.Remove(pipe)
	return r
}

// rates returns both sides' MB/s of uncompressed tar.
func (r benchRound) rates(tarSize int64) (ours, pipe float64) {
	return float64(tarSize) / 1e6 / r.ours.Seconds(), float64(tarSize) / 1e6 / r.pipe.Seconds()
}

func (r benchRound) summary(tarSize int64) string {
	mbOurs, mbPipe := r.rates(tarSize)
	return fmt.Sprintf("tar.%s, %d MB tar: provisioner %.1f s = %.0f MB/s (peak RSS %.0f MiB); %s %.1f s = %.0f MB/s (peak RSS %.0f MiB); ratio %.2f; both trees equal the tar (%d entries)",
		r.format, tarSize/1e6, r.ours.Seconds(), mbOurs, float64(r.rss)/(1<<20), pipelineName(r.format), r.pipe.Seconds(), mbPipe, float64(r.pipeRSS)/(1<<20), mbOurs/mbPipe, r.entries)
}

// pipelineName is the pipeline for format as a user would type it.
func pipelineName(format string) string {
	return "curl | " + strings.Join(benchDecompressor[format], " ") + " | tar -x"
}

func benchCache(b *testing.B) string {
	dir, err := os.UserCacheDir()
	if err != nil {
		dir = os.TempDir()
	}
	dir = filepath.Join(dir, "provisioner-bench")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		b.Fatal(err)
	}
	return dir
}

// benchSources are the trees the tarball takes real files from, in order: many small
// files (/usr/share), large ones (/usr/lib), then, on a machine whose /usr is small,
// the Go toolchain that runs the test.
func benchSources() []string {
	return []string{"/usr/share", "/usr/lib", "/usr/bin", runtime.GOROOT()}
}

// benchTarball builds, unless path already holds one that large, a tar of real files
// (directories, regular files, symlinks) from benchSources until it holds limit bytes
// of files, in a stable order. Fewer than least bytes skips the run.
func benchTarball(tb testing.TB, path string, limit, least int64) (string, int64) {
	if fi, err := os.Stat(path); err == nil && fi.Size() >= limit {
		return path, fi.Size()
	}
	tmp := path + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		tb.Fatal(err)
	}
	tw := tar.NewWriter(f)
	var total int64
	seen := map[string]bool{}
	for _, top := range benchSources() {
		if top == "" || total >= limit {
			continue
		}
		// WalkDir visits each directory's entries in lexical order, parents first.
		err := filepath.WalkDir(top, func(p string, d fs.DirEntry, err error) error {
			if total >= limit {
				return fs.SkipAll
			}
			if err != nil || seen[p] {
				return nil
			}
			seen[p] = true
			n, err := addToTar(tw, p)
			total += n
			return err
		})
		if err != nil {
			tb.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		tb.Fatal(err)
	}
	if err := f.Close(); err != nil {
		tb.Fatal(err)
	}
	if total < least {
		os.Remove(tmp)
		tb.Skipf("%v hold only %d MB of files; the benchmark needs %d", benchSources(), total/1e6, least/1e6)
	}
	if err := os.Rename(tmp, path); err != nil {
		tb.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		tb.Fatal(err)
	}
	return path, fi.Size()
}

// addToTar writes p (a directory, regular file or symlink; anything else, or a file
// that cannot be read, is left out) under its absolute name without the leading slash,
// and returns the bytes of file data written.
func addToTar(tw *tar.Writer, p string) (int64, error) {
	fi, err := os.Lstat(p)
	if err != nil {
		return 0, nil
	}
	link := ""
	if fi.Mode()&os.ModeSymlink != 0 {
		if link, err = os.Readlink(p); err != nil {
			return 0, nil
		}
	} else if !fi.Mode().IsRegular() && !fi.IsDir() {
		return 0, nil
	}
	h, err := tar.FileInfoHeader(fi, link)
	if err != nil {
		return 0, nil
	}
	h.Name = p[1:]
	if fi.IsDir() {
		h.Name += "/"
	}
	if !fi.Mode().IsRegular() {
		return 0, tw.WriteHeader(h)
	}
	src, err := os.Open(p)
	if err != nil {
		return 0, nil
	}
	defer src.Close()
	if err := tw.WriteHeader(h); err != nil {
		return 0, err
	}
	n, err := io.Copy(tw, src)
	if err != nil || n != fi.Size() {
		return n, fmt.Errorf("%s changed while archiving: %v", p, err)
	}
	return n, nil
}

// compressOnce writes out, tarPath compressed with format ("zst", "gz", "xz" or "bz2"),
// unless out is already newer than tarPath (a tar built again needs its copies made again).
func compressOnce(tb testing.TB, tarPath, format, out string) {
	tfi, err := os.Stat(tarPath)
	if err != nil {
		tb.Fatal(err)
	}
	if fi, err := os.Stat(out); err == nil && !fi.ModTime().Before(tfi.ModTime()) {
		return
	}
	src, err := os.Open(tarPath)
	if err != nil {
		tb.Fatal(err)
	}
	defer src.Close()
	dst, err := os.Create(out + ".tmp")
	if err != nil {
		tb.Fatal(err)
	}
	defer dst.Close()
	if argv, ok := benchCompressor[format]; ok {
		cmd := exec.Command(argv[0], argv[1:]...)
		cmd.Stdin, cmd.Stdout, cmd.Stderr = src, dst, os.Stderr
		if err := errors.Join(cmd.Run(), dst.Close()); err != nil {
			tb.Fatalf("%s < %s: %v", strings.Join(argv, " "), tarPath, err)
		}
		if err := os.Rename(out+".tmp", out); err != nil {
			tb.Fatal(err)
		}
		return
	}
	var w io.WriteCloser
	if format == "zst" {
		w, err = zstd.NewWriter(dst)
	} else {
		w, err = kgzip.NewWriterLevel(dst, kgzip.DefaultCompression)
	}
	if err != nil {
		tb.Fatal(err)
	}
	if _, err := io.Copy(w, src); err != nil {
		tb.Fatalf("compressing %s: %v", tarPath, err)
	}
	if err := errors.Join(w.Close(), dst.Close()); err != nil {
		tb.Fatalf("compressing %s: %v", tarPath, err)
	}
	if err := os.Rename(out+".tmp", out); err != nil {
		tb.Fatal(err)
	}
}

func buildProvisioner(tb testing.TB) string {
	bin := filepath.Join(tb.TempDir(), "provisioner")
	cmd := exec.Command(filepath.Join(runtime.GOROOT(), "bin", "go"), "build", "-o", bin, "./cmd/provisioner")
	cmd.Dir = "../.."
	if out, err := cmd.CombinedOutput(); err != nil {
		tb.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// timeOurs runs provisioner deploy onto a new image file of size diskSize and returns the
// wall time and the process's peak RSS in bytes.
func timeOurs(tb testing.TB, bin, spec, img, diskSize string) (time.Duration, int64) {
	os.Remove(img)
	cmd := exec.Command(bin, "deploy", spec, "--device", "vda="+img, "--size", "vda="+diskSize, "--seed", "bench", "--boot-info", "")
	start := time.Now()
	if out, err := cmd.CombinedOutput(); err != nil {
		tb.Fatalf("provisioner deploy: %v\n%s", err, out)
	}
	elapsed := time.Since(start)
	ru := cmd.ProcessState.SysUsage().(*syscall.Rusage)
	return elapsed, ru.Maxrss * 1024
}

// timePipeline partitions an identical image with provisioner, mounts its filesystem and
// runs curl | zstd -dc | tar -x into it (three processes joined by pipes, no shell), then
// unmounts. The partitioning is timed too, as it is part of ours. It returns the time and
// the sum of the pipeline's processes' peak RSS.
func timePipeline(tb testing.TB, bin, spec, img, diskSize, url, format string) (time.Duration, int64) {
	os.Remove(img)
	start := time.Now()
	if out, err := exec.Command(bin, "partition", spec, "--device", "vda="+img, "--size", "vda="+diskSize, "--seed", "bench").CombinedOutput(); err != nil {
		tb.Fatalf("provisioner partition: %v\n%s", err, out)
	}
	mnt, unmount, detach := mountImage(tb, img, 0, true)
	rss := pipeInto(tb, url, format, mnt)
	unmount()
	elapsed := time.Since(start)
	detach()
	return elapsed, rss
}

// pipeInto runs curl URL | zstd -dc | tar -x -C mnt (benchDecompressor's for other
// formats): three processes joined by pipes, no shell. It returns the sum of the three
// processes' peak RSS: an upper bound of what they held at once.
func pipeInto(tb testing.TB, url, format, mnt string) int64 {
	// --noproxy: a proxy from the environment must not carry loopback traffic; the
	// provisioner's HTTP client never sends loopback through one either.
	curl := exec.Command("curl", "-sSf", "--noproxy", "*", url)
	argv := benchDecompressor[format]
	dec := exec.Command(argv[0], argv[1:]...)
	untar := exec.Command("tar", "-x", "-C", mnt)
	p1, err := curl.StdoutPipe()
	if err != nil {
		tb.Fatal(err)
	}
	dec.Stdin = p1
	p2, err := dec.StdoutPipe()
	if err != nil {
		tb.Fatal(err)
	}
	untar.Stdin = p2
	for _, c := range []*exec.Cmd{curl, dec, untar} {
		c.Stderr = os.Stderr
		if err := c.Start(); err != nil {
			tb.Fatal(err)
		}
	}
	// Every process is waited for before a failure is reported, so none still holds the
	// mount when the test's cleanup unmounts it.
	var errs []error
	for _, c := range []*exec.Cmd{curl, dec, untar} {
		if err := c.Wait(); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", c.Path, err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		tb.Fatal(err)
	}
	var rss int64
	for _, c := range []*exec.Cmd{curl, dec, untar} {
		rss += peakRSS(c.ProcessState)
	}
	return rss
}

// peakRSS is the peak RSS in bytes of an exited process: the largest of the process and
// the children it waited for (wait4's ru_maxrss on Linux).
func peakRSS(ps *os.ProcessState) int64 {
	return ps.SysUsage().(*syscall.Rusage).Maxrss * 1024
}

// mountImage attaches img (read-write or read-only), makes the kernel see its
// partitions and mounts the ext4 of partition n (0: the last one, the deploy spec's only
// filesystem) at a new directory. unmount and detach undo the two halves; each also runs
// when the test ends, if not called before.
func mountImage(tb testing.TB, img string, n int, writable bool) (mnt string, unmount, detach func()) {
	loop, tbl, detach := attachImage(tb, img, writable)
	if n == 0 {
		n = tbl[len(tbl)-1].Number
	}
	mnt, unmount = mountDev(tb, disk.PartitionPath(loop, n), writable)
	return mnt, unmount, detach
}

// attachImage attaches img (read-write or read-only) and makes the kernel see the
// partitions of its GPT, which it returns with the loop device. detach also runs when the
// test ends, if not called before.
func attachImage(tb testing.TB, img string, writable bool) (loopPath string, tbl []disk.Part, detach func()) {
	ctx := context.Background()
	attach := disk.AttachLoop
	if !writable {
		attach = disk.AttachLoopReadOnly
	}
	loop, err := attach(ctx, img, 512)
	if err != nil {
		tb.Fatal(err)
	}
	detach = func() {
		// Another program probing block devices (blkid, os-prober) may hold a partition
		// open for a moment, and removing it then fails with EBUSY; Detach may be
		// called again until it succeeds.
		deadline := time.Now().Add(10 * time.Second)
		for {
			err := loop.Detach(ctx)
			if err == nil {
				return
			}
			if time.Now().After(deadline) {
				tb.Error(err)
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	tb.Cleanup(detach)
	tbl, err = readTable(ctx, loop.Path)
	if err == nil && len(tbl) == 0 {
		err = fmt.Errorf("%s: no partitions", img)
	}
	if err == nil {
		err = (disk.Sys{}).Reread(ctx, loop.Path, tbl)
	}
	if err != nil {
		tb.Fatal(err)
	}
	return loop.Path, tbl, detach
}

// mountDev mounts the ext4 on dev at a new directory; unmount also runs when the test
// ends, if not called before.
func mountDev(tb testing.TB, dev string, writable bool) (mnt string, unmount func()) {
	ctx := context.Background()
	mnt = tb.TempDir()
	if err := disk.MountPrivate(ctx, dev, mnt, "ext4", writable); err != nil {
		tb.Fatal(err)
	}
	mounted := true
	unmount = func() {
		if mounted {
			mounted = false
			if err := disk.Unmount(ctx, mnt); err != nil {
				tb.Fatal(err)
			}
		}
	}
	tb.Cleanup(unmount)
	return mnt, unmount
}

// verifyImage mounts img's filesystem (partition part, 0 for the last) read-only and
// compares its tree with the tar; it returns the number of entries compared. who names
// the side that wrote the tree.
func verifyImage(tb testing.TB, img string, part int, tarPath, who string) int {
	tb.Helper()
	mnt, unmount, detach := mountImage(tb, img, part, false)
	defer detach()
	defer unmount()
	n, errs := compareTree(tarPath, mnt)
	for i, err := range errs {
		if i == 10 {
			tb.Errorf("%s: %d more differences", who, len(errs)-i)
			break
		}
		tb.Errorf("%s: %v", who, err)
	}
	if len(errs) > 0 {
		tb.FailNow()
	}
	return n
}

// compareTree checks every entry of the tar at tarPath against the tree under root: the
// type, permission and set-id bits, owner, the mtime of files and symlinks, a symlink's
// target, a file's size and bytes. It returns the number of entries and the differences.
func compareTree(tarPath, root string) (int, []error) {
	f, err := os.Open(tarPath)
	if err != nil {
		return 0, []error{err}
	}
	defer f.Close()
	tr := tar.NewReader(f)
	var errs []error
	n := 0
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return n, errs
		}
		if err != nil {
			return n, append(errs, fmt.Errorf("reading %s: %w", tarPath, err))
		}
		n++
		if err := compareEntry(tr, h, filepath.Join(root, h.Name)); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", h.Name, err))
		}
	}
}

// modeBits are the parts of a mode both sides must keep.
const modeBits = fs.ModeType | fs.ModePerm | fs.ModeSetuid | fs.ModeSetgid | fs.ModeSticky

func compareEntry(tr io.Reader, h *tar.Header, p string) error {
	fi, err := os.Lstat(p)
	if err != nil {
		return err
	}
	if got, want := fi.Mode()&modeBits, h.FileInfo().Mode()&modeBits; got != want {
		return fmt.Errorf("mode %v, want %v", got, want)
	}
	st := fi.Sys().(*syscall.Stat_t)
	if int(st.Uid) != h.Uid || int(st.Gid) != h.Gid {
		return fmt.Errorf("owner %d:%d, want %d:%d", st.Uid, st.Gid, h.Uid, h.Gid)
	}
	if h.Typeflag == tar.TypeDir {
		return nil
	}
	if h.Typeflag == tar.TypeSymlink {
		if link, err := os.Readlink(p); err != nil || link != h.Linkname {
			return fmt.Errorf("link to %q (%v), want %q", link, err, h.Linkname)
		}
	}
	if !fi.ModTime().Equal(h.ModTime) {
		return fmt.Errorf("mtime %v, want %v", fi.ModTime(), h.ModTime)
	}
	if h.Typeflag == tar.TypeSymlink {
		return nil
	}
	if fi.Size() != h.Size {
		return fmt.Errorf("size %d, want %d", fi.Size(), h.Size)
	}
	return sameBytes(tr, p)
}

// sameBytes compares the rest of want with the file at p.
func sameBytes(want io.Reader, p string) error {
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	a, b := make([]byte, 1<<16), make([]byte, 1<<16)
	for off := int64(0); ; {
		n, err := io.ReadFull(want, a)
		if n > 0 {
			if _, err := io.ReadFull(f, b[:n]); err != nil {
				return fmt.Errorf("reading at %d: %w", off, err)
			}
			if !bytes.Equal(a[:n], b[:n]) {
				return fmt.Errorf("content differs in the %d bytes at %d", n, off)
			}
			off += int64(n)
		}
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// readTable lists the partitions of dev's GPT as the kernel needs them.
func readTable(ctx context.Context, dev string) ([]disk.Part, error) {
	t, err := partition.ReadTable(ctx, dev, 512)
	if err != nil {
		return nil, err
	}
	var parts []disk.Part
	for _, p := range t.Partitions {
		parts = append(parts, disk.Part{Number: p.Number, Start: p.Start * 512, Size: (p.End - p.Start + 1) * 512})
	}
	return parts, nil
}

// TestCompareTree keeps the benchmark's tree check honest: a tree equals the tar made
// from it, and a changed byte, mode, link target or a missing file is each reported.
func TestCompareTree(t *testing.T) {
	src := t.TempDir()
	os.MkdirAll(filepath.Join(src, "d"), 0o755)
	os.WriteFile(filepath.Join(src, "d/a"), bytes.Repeat([]byte("abc"), 50000), 0o644)
	os.WriteFile(filepath.Join(src, "d/b"), []byte("b"), 0o755)
	os.WriteFile(filepath.Join(src, "d/c"), nil, 0o600)
	os.Symlink("a", filepath.Join(src, "d/l"))
	// The tar keeps whole seconds only.
	whole := []unix.Timeval{{Sec: 1767225600}, {Sec: 1767225600}}
	for _, p := range []string{"d", "d/a", "d/b", "d/c", "d/l"} {
		if err := unix.Lutimes(filepath.Join(src, p), whole); err != nil {
			t.Fatal(err)
		}
	}
	tarPath := filepath.Join(t.TempDir(), "t.tar")
	f, err := os.Create(tarPath)
	if err != nil {
		t.Fatal(err)
	}
	tw := tar.NewWriter(f)
	for _, p := range []string{"d", "d/a", "d/b", "d/c", "d/l"} {
		if _, err := addToTar(tw, filepath.Join(src, p)); err != nil {
			t.Fatal(err)
		}
	}
	if err := errors.Join(tw.Close(), f.Close()); err != nil {
		t.Fatal(err)
	}
	if n, errs := compareTree(tarPath, "/"); n != 5 || len(errs) != 0 {
		t.Fatalf("the source tree: %d entries, differences %v; want 5, none", n, errs)
	}
	a := filepath.Join(src, "d/a")
	fi, _ := os.Stat(a)
	data, _ := os.ReadFile(a)
	data[100000] = 'x'
	os.WriteFile(a, data, 0o644)
	os.Chtimes(a, fi.ModTime(), fi.ModTime())
	os.Chmod(filepath.Join(src, "d/b"), 0o644)
	os.Remove(filepath.Join(src, "d/c"))
	os.Remove(filepath.Join(src, "d/l"))
	os.Symlink("b", filepath.Join(src, "d/l"))
	_, errs := compareTree(tarPath, "/")
	want := []string{"d/a: content differs in the 65536 bytes at 65536", "d/b: mode -rw-r--r--, want -rwxr-xr-x", "d/c: lstat", `d/l: link to "b" (<nil>), want "a"`}
	if len(errs) != len(want) {
		t.Fatalf("differences %v, want %d", errs, len(want))
	}
	for i, err := range errs {
		if !strings.Contains(err.Error(), want[i]) {
			t.Errorf("difference %d is %q, want it to name %q", i, err, want[i])
		}
	}
}
