package engine

import (
	"archive/tar"
	"context"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"syscall"
	"testing"
	"time"

	kgzip "github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/provisioner/provisioner/internal/disk"
	"github.com/provisioner/provisioner/partition"
)

// benchTarBytes is the size of the benchmark's rootfs: at least 1 GiB of real files.
const benchTarBytes = 1100 << 20

// BenchmarkDeployVsPipeline compares `provisioner deploy` of a >= 1 GiB rootfs served
// over HTTP on loopback (tar.zst and tar.gz) with the shell pipeline a user would write
// (curl URL | zstd -dc | tar -x, and with gzip), each onto a freshly partitioned
// ext4 on a loop device. Both sides include partitioning and the final unmount (which
// flushes what tar left in the page cache). It reports MB/s of uncompressed tar for both,
// their ratio, and the peak RSS of the provisioner process. Run it with -benchtime 1x
// (make bench): one deploy is ~1 GiB of writes.
func BenchmarkDeployVsPipeline(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Skip("needs root (loop devices, mounts)")
	}
	for _, tool := range []string{"curl", "zstd", "gzip", "tar", "mke2fs"} {
		if _, err := exec.LookPath(tool); err != nil {
			b.Skipf("%s is not installed (make bench installs it)", tool)
		}
	}
	cache := benchCache(b)
	tarPath, tarSize := benchTarball(b, cache)
	blobs := map[string]string{"zst": tarPath + ".zst", "gz": tarPath + ".gz"}
	compressOnce(b, tarPath, blobs)
	srv := httptest.NewServer(http.FileServer(http.Dir(cache)))
	defer srv.Close()
	bin := buildProvisioner(b)
	work := b.TempDir()

	for _, format := range []string{"zst", "gz"} {
		b.Run("tar."+format, func(b *testing.B) {
			url := srv.URL + "/" + filepath.Base(blobs[format])
			spec := filepath.Join(work, "bench-"+format+".json")
			doc := fmt.Sprintf(`{"images": [{"name": "bench", "url": %q, "target": "/"}], "boot_mode": "bios",
 "partitions": [{"type": "disk", "id": {"type": "name", "value": "vda"}, "volumes": [
  {"type": "partition", "mount": "/", "file_system": "ext4", "size": "remaining"}]}]}`, url)
			if err := os.WriteFile(spec, []byte(doc), 0o644); err != nil {
				b.Fatal(err)
			}
			for b.Loop() {
				ours, rss := timeOurs(b, bin, spec, filepath.Join(work, "ours.img"))
				pipe := timePipeline(b, bin, spec, filepath.Join(work, "pipe.img"), url, format)
				mbOurs := float64(tarSize) / 1e6 / ours.Seconds()
				mbPipe := float64(tarSize) / 1e6 / pipe.Seconds()
				b.ReportMetric(mbOurs, "ours-MB/s")
				b.ReportMetric(mbPipe, "pipeline-MB/s")
				b.ReportMetric(mbOurs/mbPipe, "ratio")
				b.ReportMetric(float64(rss)/(1<<20), "ours-peak-MiB")
				b.Logf("tar.%s, %d MB tar: provisioner %.1f s = %.0f MB/s (peak RSS %.0f MiB); curl | %s -dc | tar -x %.1f s = %.0f MB/s; ratio %.2f",
					format, tarSize/1e6, ours.Seconds(), mbOurs, float64(rss)/(1<<20), map[string]string{"zst": "zstd", "gz": "gzip"}[format], pipe.Seconds(), mbPipe, mbOurs/mbPipe)
			}
		})
	}
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

// benchTarball builds (once, cached) a tar of real files from /usr: many small files
// (/usr/share) and large ones (/usr/lib), in a stable order.
func benchTarball(b *testing.B, cache string) (string, int64) {
	path := filepath.Join(cache, "rootfs.tar")
	if fi, err := os.Stat(path); err == nil && fi.Size() >= benchTarBytes {
		return path, fi.Size()
	}
	tmp := path + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		b.Fatal(err)
	}
	tw := tar.NewWriter(f)
	var total int64
	for _, top := range []string{"/usr/share", "/usr/lib", "/usr/bin"} {
		var names []string
		filepath.WalkDir(top, func(p string, d fs.DirEntry, err error) error {
			if err == nil {
				names = append(names, p)
			}
			return nil
		})
		sort.Strings(names)
		for _, p := range names {
			if total >= benchTarBytes {
				break
			}
			fi, err := os.Lstat(p)
			if err != nil {
				continue
			}
			link := ""
			if fi.Mode()&os.ModeSymlink != 0 {
				link, _ = os.Readlink(p)
			} else if !fi.Mode().IsRegular() && !fi.IsDir() {
				continue
			}
			h, err := tar.FileInfoHeader(fi, link)
			if err != nil {
				continue
			}
			h.Name = p[1:]
			if fi.IsDir() {
				h.Name += "/"
			}
			if fi.Mode().IsRegular() {
				src, err := os.Open(p)
				if err != nil {
					continue
				}
				if err := tw.WriteHeader(h); err != nil {
					b.Fatal(err)
				}
				n, err := io.Copy(tw, src)
				src.Close()
				if err != nil || n != fi.Size() {
					b.Fatalf("%s changed while archiving: %v", p, err)
				}
				total += n
				continue
			}
			if err := tw.WriteHeader(h); err != nil {
				b.Fatal(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		b.Fatal(err)
	}
	if err := f.Close(); err != nil {
		b.Fatal(err)
	}
	if total < benchTarBytes {
		os.Remove(tmp)
		b.Skipf("/usr holds only %d MB of files; the benchmark needs %d", total/1e6, int64(benchTarBytes)/1e6)
	}
	if err := os.Rename(tmp, path); err != nil {
		b.Fatal(err)
	}
	fi, _ := os.Stat(path)
	return path, fi.Size()
}

func compressOnce(b *testing.B, tarPath string, blobs map[string]string) {
	for format, out := range blobs {
		if _, err := os.Stat(out); err == nil {
			continue
		}
		src, err := os.Open(tarPath)
		if err != nil {
			b.Fatal(err)
		}
		dst, err := os.Create(out + ".tmp")
		if err != nil {
			b.Fatal(err)
		}
		var w io.WriteCloser
		if format == "zst" {
			w, err = zstd.NewWriter(dst)
		} else {
			w, err = kgzip.NewWriterLevel(dst, kgzip.DefaultCompression)
		}
		if err != nil {
			b.Fatal(err)
		}
		if _, err := io.Copy(w, src); err != nil {
			b.Fatal(err)
		}
		w.Close()
		src.Close()
		dst.Close()
		if err := os.Rename(out+".tmp", out); err != nil {
			b.Fatal(err)
		}
	}
}

func buildProvisioner(b *testing.B) string {
	bin := filepath.Join(b.TempDir(), "provisioner")
	cmd := exec.Command(filepath.Join(runtime.GOROOT(), "bin", "go"), "build", "-o", bin, "./cmd/provisioner")
	cmd.Dir = "../.."
	if out, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

const benchDisk = "3GiB"

// timeOurs runs provisioner deploy onto a new image file and returns the wall time and
// the process's peak RSS in bytes.
func timeOurs(b *testing.B, bin, spec, img string) (time.Duration, int64) {
	os.Remove(img)
	defer os.Remove(img)
	cmd := exec.Command(bin, "deploy", spec, "--device", "vda="+img, "--size", "vda="+benchDisk, "--seed", "bench")
	start := time.Now()
	if out, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("provisioner deploy: %v\n%s", err, out)
	}
	elapsed := time.Since(start)
	ru := cmd.ProcessState.SysUsage().(*syscall.Rusage)
	return elapsed, ru.Maxrss * 1024
}

// timePipeline partitions an identical image with provisioner, mounts its root and runs
// curl | zstd -dc | tar -x into it (three processes joined by pipes, no shell), then
// unmounts. The partitioning is timed too, as it is part of ours.
func timePipeline(b *testing.B, bin, spec, img, url, format string) time.Duration {
	os.Remove(img)
	defer os.Remove(img)
	start := time.Now()
	if out, err := exec.Command(bin, "partition", spec, "--device", "vda="+img, "--size", "vda="+benchDisk, "--seed", "bench").CombinedOutput(); err != nil {
		b.Fatalf("provisioner partition: %v\n%s", err, out)
	}
	ctx := context.Background()
	loop, err := disk.AttachLoop(ctx, img, 512)
	if err != nil {
		b.Fatal(err)
	}
	defer loop.Detach(ctx)
	tbl, err := readTable(ctx, loop.Path)
	if err != nil {
		b.Fatal(err)
	}
	if err := (disk.Sys{}).Reread(ctx, loop.Path, tbl); err != nil {
		b.Fatal(err)
	}
	mnt := b.TempDir()
	if err := disk.Mount(ctx, disk.PartitionPath(loop.Path, 2), mnt, "ext4", ""); err != nil {
		b.Fatal(err)
	}
	decomp := map[string]string{"zst": "zstd", "gz": "gzip"}[format]
	curl := exec.Command("curl", "-sSf", url)
	dec := exec.Command(decomp, "-dc")
	untar := exec.Command("tar", "-x", "-C", mnt)
	p1, _ := curl.StdoutPipe()
	dec.Stdin = p1
	p2, _ := dec.StdoutPipe()
	untar.Stdin = p2
	for _, c := range []*exec.Cmd{curl, dec, untar} {
		c.Stderr = os.Stderr
		if err := c.Start(); err != nil {
			b.Fatal(err)
		}
	}
	for _, c := range []*exec.Cmd{curl, dec, untar} {
		if err := c.Wait(); err != nil {
			b.Fatalf("%s: %v", c.Path, err)
		}
	}
	if err := disk.Unmount(ctx, mnt); err != nil {
		b.Fatal(err)
	}
	return time.Since(start)
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
